"""Settings from the environment, read in one place.

Every knob of the service is an environment variable (an app setting in Azure) with a default
that suits a 2-core machine; nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "model"
PREFIX = "EMNIST_EDGE_"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {PREFIX + name}={raw!r} is not an integer") from exc


def _path(name: str, default: Path) -> Path:
    raw = os.environ.get(PREFIX + name)
    return Path(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    model_path: Path
    manifest_path: Path
    # Intra-op threads for torch. One thread gives the lowest single-image latency; batches gain
    # from more, so the default is all cores up to two.
    torch_threads: int
    # Images per forward pass when classifying many at once.
    batch_size: int
    # Decoded pixels allowed per image (width * height); guards against decompression bombs.
    max_image_pixels: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_path=_path("MODEL_PATH", MODEL_DIR / "emnist_edge.pt"),
            manifest_path=_path("MANIFEST_PATH", MODEL_DIR / "manifest.json"),
            torch_threads=_int("TORCH_THREADS", min(os.cpu_count() or 1, 2)),
            batch_size=_int("BATCH_SIZE", 256),
            max_image_pixels=_int("MAX_IMAGE_PIXELS", 40_000_000),
        )
