"""The model manifest: everything a server needs to use a TorchScript file without reading code.

Written by ``model.export`` and checked by the loader; this module is the one definition of
its schema, so writer and reader cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ModelLoadError

FORMAT_VERSION = 1
ORIENTATIONS = ("upright", "emnist_raw")
INK_POLARITIES = ("white_on_black", "black_on_white")


@dataclass(frozen=True)
class InputSpec:
    """How a 28x28 upright, white-on-black uint8 tile becomes the model's input tensor."""

    shape: tuple[int, int, int]  # C, H, W of one image; the batch dimension is free
    dtype: str
    orientation: str  # "upright" or "emnist_raw" (transposed, as the EMNIST files store images)
    ink: str  # "white_on_black" or "black_on_white"
    scale: float  # pixel * scale, then (. - mean) / std
    mean: float
    std: float


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    file: str
    sha256: str
    labels: tuple[str, ...]
    input: InputSpec
    output: str  # "logits" or "probabilities"
    architecture: str
    parameters: int
    macs_per_image: int
    file_bytes: int
    format_version: int = FORMAT_VERSION
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # The same network as ONNX, for phones, browsers and boards (``model.export --onnx``): file,
    # sha256, opset, input/output names. Described here, never loaded by the service.
    onnx: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def public(self) -> dict[str, Any]:
        """What clients may see (everything but local file layout)."""
        data = asdict(self)
        data.pop("file")
        data["onnx"] = {k: v for k, v in data["onnx"].items() if k != "file"}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise ModelLoadError(
                    f"manifest format version {data['format_version']} is not supported "
                    f"(expected {FORMAT_VERSION})"
                )
            spec = InputSpec(**{**data["input"], "shape": tuple(data["input"]["shape"])})
            manifest = cls(**{**data, "labels": tuple(data["labels"]), "input": spec})
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"manifest is missing or has unexpected fields: {exc}") from exc
        manifest.check()
        return manifest

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"model manifest {path} does not exist") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model manifest {path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"model manifest {path} is not a JSON object")
        return cls.from_dict(data)

    def check(self) -> None:
        """Internal consistency, independent of the model file."""
        spec = self.input
        problems = []
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            problems.append("labels must be at least two distinct strings")
        if spec.shape[1:] != (28, 28) or spec.shape[0] != 1:
            problems.append(f"input shape {list(spec.shape)} is not [1, 28, 28]")
        if spec.dtype != "float32":
            problems.append(f"input dtype {spec.dtype!r} is not float32")
        if spec.orientation not in ORIENTATIONS:
            problems.append(f"orientation {spec.orientation!r} not in {ORIENTATIONS}")
        if spec.ink not in INK_POLARITIES:
            problems.append(f"ink {spec.ink!r} not in {INK_POLARITIES}")
        if spec.std <= 0 or spec.scale <= 0:
            problems.append("normalisation scale and std must be positive")
        if self.output not in ("logits", "probabilities"):
            problems.append(f"output {self.output!r} is neither logits nor probabilities")
        if problems:
            raise ModelLoadError("inconsistent model manifest: " + "; ".join(problems))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
