"""``python -m model.evaluate --data DIR --split NAME [--model PATH]``: one JSON line of metrics.

``--split validation`` rebuilds the validation split the model's manifest records (seed,
fraction) and weights it to the natural class frequencies, as training scored it.

Evaluation goes through the same loader and input conversion as the service, so the figures
describe the shipped file as served, not the training-time network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.data import data_dir
from model.splits import named_split
from shared.config import Settings
from shared.emnist import upright
from shared.model_loader import LoadedModel, load_model


def split_probabilities(
    model: LoadedModel, raw_images: np.ndarray, batch: int = 2048
) -> torch.Tensor:
    """Probabilities for EMNIST tiles as stored (raw orientation), via the serving conversion."""
    tiles = upright(raw_images)
    chunks = [model.probabilities(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    return torch.cat(chunks)


# Classes a single size-normalised 28x28 tile cannot tell apart reliably: letters whose upper
# and lower case differ only in size (EMNIST's own bymerge merges these, less i, j, l, whose
# cases differ in shape), and the digit-letter look-alikes 0/O/o and 1/I/l.
CASE_AMBIGUOUS = ("0Oo", "1Il", "Cc", "Kk", "Mm", "Pp", "Ss", "Uu", "Vv", "Ww", "Xx", "Yy", "Zz")


def wilson_interval(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``p`` measured on ``n`` (effective) images."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(float(centre - half), 5), round(float(centre + half), 5)


def case_groups(names: Sequence[str]) -> np.ndarray:
    """Class index -> group index, one group per ``CASE_AMBIGUOUS`` set, else its own."""
    group = {c: g for g, members in enumerate(CASE_AMBIGUOUS) for c in members}
    return np.array([group.get(c, len(CASE_AMBIGUOUS) + i) for i, c in enumerate(names)])


def weighted_mean(hits: torch.Tensor, weights: torch.Tensor | None) -> float:
    """Share of hits, each image counting ``weights[i]`` (equally when None)."""
    if weights is None:
        return hits.float().mean().item()
    return ((hits.float() * weights).sum() / weights.sum()).item()


def metrics(probs: torch.Tensor, labels: np.ndarray, names: Sequence[str] | None = None,
            weights: np.ndarray | None = None) -> dict[str, object]:
    """top-1 and top-3 with 95 % intervals; with ``names`` also top-1 counting a prediction in
    the true class's ``CASE_AMBIGUOUS`` group as right; with ``weights`` (see
    ``model.splits.natural_weights``) each image counts its weight, and the intervals use
    Kish's effective sample size."""
    y = torch.from_numpy(labels.astype(np.int64))
    w = None if weights is None else torch.from_numpy(weights.astype(np.float32))
    n_eff = len(labels) if weights is None else float(weights.sum() ** 2 / (weights**2).sum())
    top3 = probs.topk(3, dim=1).indices
    hits = {"top1": top3[:, 0] == y, "top3": (top3 == y[:, None]).any(1)}
    if names is not None:
        groups = torch.from_numpy(case_groups(names))
        hits["top1_case_insensitive"] = groups[top3[:, 0]] == groups[y]
    result: dict[str, object] = {}
    for key, hit in hits.items():
        result[key] = round(weighted_mean(hit, w), 5)
        result[f"{key}_ci95"] = wilson_interval(result[key], n_eff)
    result["n"] = len(labels)
    if weights is not None:
        result["n_effective"] = round(n_eff)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    parser.add_argument("--split", required=True,
                        help="test, train, extra, or validation: the split the manifest records, "
                             "rebuilt and weighted to the natural class frequencies")
    parser.add_argument("--model", type=Path, help="TorchScript file (default: the shipped model)")
    parser.add_argument("--manifest", type=Path, help="manifest (default: manifest.json beside it)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    model_path = args.model or settings.model_path
    manifest_path = args.manifest or (
        model_path.parent / "manifest.json" if args.model else settings.manifest_path
    )
    torch.set_num_threads(max(1, settings.torch_threads))
    model = load_model(model_path, manifest_path)
    try:
        images, labels, weights = named_split(data_dir(args.data), args.split,
                                              model.manifest.training)
    except ValueError as exc:
        parser.error(str(exc))
    measured = metrics(split_probabilities(model, images), labels, model.labels, weights)
    result = {"split": args.split, **measured,
              "model": model.manifest.name, "sha256": model.manifest.sha256}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
