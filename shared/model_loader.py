"""The one TorchScript loader that every entry point uses, and the registry that caches it.

Each entry point (the Functions app, the local server, the CLI, the benchmarks) builds one
``ModelRegistry`` and passes it down: a model is loaded on first use, once per registry and
path (guarded by a lock, so concurrent first requests load it once), checked against its
manifest, and warmed up with a forward pass so the first real request does not pay for
TorchScript's first-run optimisation. Nothing here is a module-level instance.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.config import Settings
from shared.errors import ModelLoadError
from shared.manifest import Manifest, sha256_file


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: the module as saved, which runs a single tile, and the same network
    optimised for inference (``batched``), which runs two tiles or more.

    ``torch.jit.optimize_for_inference`` packs the convolutions' weights for oneDNN once, at
    load, and fuses each with its ReLU; as saved, oneDNN reorders the weights on every call
    from two tiles up, and a single tile takes PyTorch's own convolution. Measured on 2 cores
    (median of 300 forward passes, one thread): a batch of 256 1.61-1.70x as many images a
    second (1 and 2 threads), batches of 2-16 15-18 % faster; a single tile 30 % slower
    (188 against 143 us), so it keeps the module as saved. The two agree to float rounding
    (logits within 1e-5).
    """

    module: torch.jit.ScriptModule
    batched: torch.jit.ScriptModule
    manifest: Manifest
    path: Path
    # torch's intra-op thread count is per calling thread (an OpenMP setting), so it is applied
    # in whichever thread runs inference; 0 leaves torch's default.
    threads: int = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def to_input(self, tiles: np.ndarray) -> torch.Tensor:
        """Upright white-on-black uint8 tiles ``[N,28,28]`` -> the tensor this model expects."""
        spec = self.manifest.input
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(torch.float32)
        if spec.orientation == "emnist_raw":
            x = x.transpose(1, 2)
        if spec.ink == "black_on_white":
            x = 255.0 - x
        x = (x * spec.scale - spec.mean) / spec.std
        return x.unsqueeze(1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output for a batch of inputs (``to_input``), through the network
        that runs that many fastest."""
        return (self.module if len(x) == 1 else self.batched)(x)

    def probabilities(self, tiles: np.ndarray) -> torch.Tensor:
        """Class probabilities ``[N, len(labels)]`` for a batch of tiles, in one forward pass."""
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            out = self.forward(self.to_input(tiles))
            return out if self.manifest.output == "probabilities" else torch.softmax(out, dim=1)


def load_model(model_path: Path, manifest_path: Path, threads: int = 0) -> LoadedModel:
    """Load and verify a model without caching (tests and tools); raises ModelLoadError."""
    manifest = Manifest.read(manifest_path)
    if not model_path.is_file():
        raise ModelLoadError(f"model file {model_path} does not exist")
    digest = sha256_file(model_path)
    if digest != manifest.sha256:
        raise ModelLoadError(
            f"model file {model_path} has sha256 {digest[:12]}..., but the manifest expects "
            f"{manifest.sha256[:12]}...: the file is corrupt or belongs to another manifest"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what we serve
            module = torch.jit.load(str(model_path), map_location="cpu")
    except Exception as exc:  # torch raises several unrelated types for a bad archive
        raise ModelLoadError(
            f"model file {model_path} is not a loadable TorchScript file: {exc}"
        ) from exc
    module.eval()
    loaded = LoadedModel(module=module, batched=_optimized(model_path), manifest=manifest,
                         path=model_path, threads=threads)
    _warm_up(loaded)
    return loaded


def _optimized(model_path: Path) -> torch.jit.ScriptModule:
    """The saved network optimised for inference (``LoadedModel``), from its own copy: the
    optimisation rewrites the module it is given. The file has loaded once already."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.optimize_for_inference(torch.jit.load(str(model_path),
                                                               map_location="cpu").eval())


def _warm_up(model: LoadedModel) -> None:
    """Run both a single image and a batch once, and check the output against the manifest."""
    for n in (1, 8):
        try:
            probs = model.probabilities(np.zeros((n, 28, 28), dtype=np.uint8))
        except Exception as exc:
            raise ModelLoadError(f"model rejects the input its manifest describes: {exc}") from exc
        if tuple(probs.shape) != (n, len(model.labels)):
            raise ModelLoadError(
                f"model outputs shape {list(probs.shape)} for {n} image(s), but the manifest "
                f"lists {len(model.labels)} labels"
            )


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, and how: the registry's key."""

    model_path: Path
    manifest_path: Path
    threads: int = 1

    @classmethod
    def of(cls, settings: Settings) -> ModelSpec:
        return cls(settings.model_path, settings.manifest_path, max(1, settings.torch_threads))


def load_spec(spec: ModelSpec) -> LoadedModel:
    """Load the model ``spec`` names, uncached (a command that loads it once)."""
    return load_model(spec.model_path, spec.manifest_path, spec.threads)


class ModelRegistry:
    """Loaded models by spec, each loaded and warmed on first use (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[ModelSpec, LoadedModel] = {}

    def get(self, spec: ModelSpec) -> LoadedModel:
        """The model for ``spec``, loading it now if it is not loaded; raises ModelLoadError."""
        model = self._models.get(spec)
        if model is None:
            with self._lock:
                model = self._models.get(spec)
                if model is None:
                    model = load_spec(spec)
                    self._models[spec] = model
        return model

    def loaded(self, spec: ModelSpec) -> LoadedModel | None:
        """The model for ``spec`` if it is loaded already; never loads."""
        return self._models.get(spec)
