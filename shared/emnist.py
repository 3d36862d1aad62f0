"""The EMNIST byclass data set as distributed: gzip IDX splits plus a label mapping file.

Images come back exactly as stored (EMNIST's raw, transposed orientation); ``upright`` turns
them the way a person reads them. Which directory holds the data is the tools' decision
(``model.data.data_dir``): this module reads no environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.idx import read_idx

DATASET = "emnist-byclass"


def split_paths(directory: Path, split: str) -> tuple[Path, Path]:
    """The image and label files of one split (``train``, ``extra``, ``test``, ...)."""
    return (
        directory / f"{DATASET}-{split}-images-idx3-ubyte.gz",
        directory / f"{DATASET}-{split}-labels-idx1-ubyte.gz",
    )


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N,28,28]`` in raw EMNIST orientation and labels ``uint8 [N]``."""
    images_path, labels_path = split_paths(directory, split)
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(f"missing EMNIST file {path}")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{split}: images {images.shape} and labels {labels.shape} do not pair up")
    return images, labels


def load_labels(directory: Path) -> list[str]:
    """Class index -> character, from the mapping file's ASCII codes."""
    labels: list[str] = []
    for line in (directory / f"{DATASET}-mapping.txt").read_text().splitlines():
        if line.strip():
            index, code = line.split()
            if int(index) != len(labels):
                raise ValueError(f"mapping file is out of order at class {index}")
            labels.append(chr(int(code)))
    return labels


def upright(images: np.ndarray) -> np.ndarray:
    """Raw EMNIST orientation -> how a person reads the character (a transpose of each image)."""
    return np.ascontiguousarray(np.swapaxes(images, -1, -2))
