"""``python -m model.evaluate --data DIR --split NAME [--model PATH]``: one JSON line of metrics.

Evaluation goes through the same loader and input conversion as the service, so the figures
describe the shipped file as served, not the training-time network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from shared.config import Settings
from shared.emnist import data_dir, load_split, upright
from shared.model_loader import LoadedModel, load_model


def split_probabilities(
    model: LoadedModel, raw_images: np.ndarray, batch: int = 2048
) -> torch.Tensor:
    """Probabilities for EMNIST tiles as stored (raw orientation), via the serving conversion."""
    tiles = upright(raw_images)
    chunks = [model.probabilities(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    return torch.cat(chunks)


def metrics(probs: torch.Tensor, labels: np.ndarray) -> dict[str, float | int]:
    y = torch.from_numpy(labels.astype(np.int64))
    top3 = probs.topk(3, dim=1).indices
    return {
        "top1": round((top3[:, 0] == y).float().mean().item(), 5),
        "top3": round((top3 == y[:, None]).any(1).float().mean().item(), 5),
        "n": len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    parser.add_argument("--split", required=True, help="e.g. test, train, extra")
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
    images, labels = load_split(data_dir(args.data), args.split)
    result = {"split": args.split, **metrics(split_probabilities(model, images), labels),
              "model": model.manifest.name, "sha256": model.manifest.sha256}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
