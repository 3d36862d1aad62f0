"""The validation split: every training-time choice is made on it, so ``test`` stays unseen.

It is carved from the pooled ``train`` + ``extra`` images, stratified by class and seeded, so
that it can be rebuilt from its seed and fraction alone (``model.export`` does this to report
validation figures for the shipped file). Because ``extra`` over-represents 32 classes, its
class mix is the training mix, not the natural one users and ``test`` have: figures on it are
weighted per image by ``p_natural(class) / p_validation(class)``, which estimates accuracy
under the natural class frequencies from the per-class results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.architectures import NUM_CLASSES
from shared.emnist import load_split

VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0


@dataclass(frozen=True)
class Split:
    """Indices into the pooled train+extra arrays (each sorted, disjoint, together complete)."""

    train: np.ndarray
    validation: np.ndarray


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> Split:
    """Hold out ``round(fraction * n_c)`` images of each class c (at least one when it has
    two or more), drawn with ``numpy.random.default_rng(seed)``: the same labels, fraction and
    seed always give the same split."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction {fraction} is not between 0 and 1")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(members))) if len(members) >= 2 else 0
        held.append(rng.permutation(members)[:k])
    validation = np.sort(np.concatenate(held))
    mask = np.ones(len(labels), dtype=bool)
    mask[validation] = False
    return Split(train=np.flatnonzero(mask), validation=validation)


def natural_weights(labels: np.ndarray, natural_labels: np.ndarray) -> np.ndarray:
    """Per-image weights that give ``labels``' classes the frequencies of ``natural_labels``
    (mean weight 1); classes absent from ``labels`` cannot be weighted and are ignored."""
    have = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    want = np.bincount(natural_labels, minlength=NUM_CLASSES).astype(np.float64)
    want = np.where(have > 0, want, 0.0)
    per_class = np.divide(want / want.sum(), have / have.sum(), out=np.zeros_like(have),
                          where=have > 0)
    return per_class[labels]


def load_pooled(directory: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The named splits concatenated in order (what a validation split is carved from): raw
    images, labels, and for each image the index in ``names`` of the file it came from."""
    loaded = [load_split(directory, name) for name in names]
    source = np.concatenate([np.full(len(y), i) for i, (_, y) in enumerate(loaded)])
    return (np.concatenate([x for x, _ in loaded]), np.concatenate([y for _, y in loaded]),
            source)


def validation_set(directory: Path, recipe: dict[str, Any]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """The validation split a manifest or checkpoint records (``training["validation"]``:
    ``from``, ``fraction``, ``seed``, ``images``), rebuilt: raw images, labels and the natural
    weights that training scored it with."""
    images, labels, source = load_pooled(directory, recipe["from"])
    held = stratified_split(labels, recipe["fraction"], recipe["seed"]).validation
    if len(held) != recipe["images"]:
        raise RuntimeError(f"the rebuilt validation split has {len(held)} images, the recipe "
                           f"says {recipe['images']}: different data or a different split")
    names = recipe["from"]
    natural = (labels[source == names.index("train")] if "train" in names
               else load_split(directory, "train")[1])
    return images[held], labels[held], natural_weights(labels[held], natural)


def named_split(directory: Path, name: str, training: dict[str, Any]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A split by name: one stored in ``directory`` (``test``, ``train``, ``extra``) as it is,
    unweighted, or ``validation`` rebuilt from the recipe in ``training`` (a manifest's) and
    weighted as ``validation_set`` weights it. Raises ``ValueError`` when the manifest records
    no validation split."""
    if name != "validation":
        return (*load_split(directory, name), None)
    recipe = training.get("validation")
    if not recipe:
        raise ValueError("the model's manifest records no validation split")
    return validation_set(directory, recipe)
