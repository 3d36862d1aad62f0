"""Where the tools (training, evaluation, export, benchmarks) find the EMNIST data: ``--data``,
else ``EMNIST_DIR``. The tools are entry points, so they read the environment; the core
(``shared.emnist``) only reads the directory it is given."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EMNIST_DIR"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory from an explicit path or ``EMNIST_DIR``; fails clearly if absent."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if not chosen:
        raise FileNotFoundError(f"no EMNIST data directory: pass --data DIR or set {ENV_VAR}")
    path = Path(chosen)
    if not path.is_dir():
        raise FileNotFoundError(f"EMNIST data directory {path} does not exist")
    return path
