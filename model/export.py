"""Checkpoint -> shipped files: ``emnist_edge.pt`` (frozen TorchScript), ``manifest.json``,
``MODEL_CARD.md`` and, with ``--onnx``, ``emnist_edge.onnx``.

``python -m model.export --checkpoint FILE --data DIR [--onnx]`` re-runs it alone;
``python -m model.export --onnx --data DIR`` (no checkpoint) adds the ONNX file to the model
already in ``--out``.

Freezing folds batch-norm into the convolutions and inlines the weights, which is what makes
the small network fast on CPUs; the frozen file is checked against the eager network before
anything is written. The export measures the validation split (rebuilt from the seed and
fraction the checkpoint records) and then, once, ``test``: nothing is chosen on it.

The ONNX file is made from the frozen TorchScript file itself, so it is the served network and
nothing else; its probabilities must equal the TorchScript model's within ``PARITY_TOLERANCE``
on every ``test`` image, or nothing is written. The service never loads it (serving stays
TorchScript): ``onnx`` and ``onnxruntime`` are development requirements, imported only here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.architectures import build, count_macs, count_parameters
from model.data import data_dir
from model.evaluate import CASE_AMBIGUOUS, metrics, split_probabilities
from model.splits import validation_set
from shared.emnist import load_labels, load_split, upright
from shared.manifest import InputSpec, Manifest, sha256_file
from shared.model_loader import LoadedModel, load_model

MODEL_FILE = "emnist_edge.pt"
ONNX_FILE = "emnist_edge.onnx"
# Opset 17 (ONNX 1.12, 2022): every current ONNX Runtime build (desktop, mobile, web) and the
# usual converters read it, and this network needs nothing newer (Conv, Relu, Flatten, Gemm).
ONNX_OPSET = 17
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"
PARITY_TOLERANCE = 1e-5  # largest allowed |p_onnx - p_torchscript| over every class and image
NAME = "emnist-edge"
VERSION = "1.1.0"
BASELINE_TOP1 = 0.841  # the original EdgeCNN on `test`, as reported by the project it replaces
INPUT_SPEC = InputSpec(shape=(1, 28, 28), dtype="float32", orientation="upright",
                       ink="white_on_black", scale=1 / 255, mean=0.5, std=0.5)


def freeze(net: torch.nn.Module) -> torch.jit.ScriptModule:
    net.eval()
    frozen = torch.jit.freeze(torch.jit.script(net))
    probe = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        if not torch.allclose(frozen(probe), net(probe), atol=1e-4, rtol=1e-4):
            raise RuntimeError("frozen TorchScript disagrees with the eager network")
    return frozen


# --- ONNX -------------------------------------------------------------------------------------


def _constants_to_initializers(graph: Any) -> None:
    """A frozen TorchScript module exports its weights as Constant nodes; tools (quantisers,
    converters, viewers) expect weights as graph initializers, so move them there."""
    from onnx import helper

    kept = []
    for node in graph.node:
        value = [a for a in node.attribute if a.name == "value"]
        if node.op_type == "Constant" and len(node.attribute) == 1 and value:
            tensor = helper.get_attribute_value(value[0])
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def export_onnx(model_path: Path, onnx_path: Path, manifest: Manifest) -> dict[str, Any]:
    """Write the TorchScript file at ``model_path`` as ONNX (opset ``ONNX_OPSET``, batch
    dimension free) and return its description for the manifest."""
    import onnx

    module = torch.jit.load(str(model_path), map_location="cpu").eval()
    with warnings.catch_warnings():
        # torch 2.9+ flags the TorchScript-based exporter as legacy; it is the one that takes a
        # frozen ScriptModule as it is, without onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False,
            opset_version=ONNX_OPSET, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(onnx_path))
    _constants_to_initializers(proto.graph)
    proto.producer_name, proto.producer_version = "emnist-edge model.export", manifest.version
    proto.doc_string = (f"{manifest.name} {manifest.version}: EMNIST byclass, 62 classes; "
                        "see MODEL_CARD.md")
    spec = manifest.input
    properties = {
        "name": manifest.name, "version": manifest.version, "labels": "".join(manifest.labels),
        "input": "float32 [batch, 1, 28, 28], upright, white ink on black, "
                 f"(pixel * {spec.scale:.10g} - {spec.mean}) / {spec.std}",
        "output": f"{ONNX_OUTPUT} [batch, {len(manifest.labels)}]: softmax gives probabilities",
        "torchscript_sha256": manifest.sha256,
    }
    del proto.metadata_props[:]
    for key, value in properties.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(onnx_path))
    return {
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "file_bytes": onnx_path.stat().st_size,
        "opset": ONNX_OPSET,
        "input": {"name": ONNX_INPUT, "shape": ["batch", *spec.shape], "dtype": "float32"},
        "output": {"name": ONNX_OUTPUT, "shape": ["batch", len(manifest.labels)],
                   "kind": manifest.output},
        "exporter": f"torch {torch.__version__.split('+')[0]} (TorchScript-based), onnx "
                    f"{onnx.__version__}",
    }


def onnx_session(onnx_path: Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(session: Any, model: LoadedModel, tiles: np.ndarray,
                       batch: int = 2048) -> torch.Tensor:
    """Probabilities from the ONNX session for tiles, converted to input the served way."""
    chunks = []
    for i in range(0, len(tiles), batch):
        x = model.to_input(tiles[i : i + batch]).numpy()
        logits = session.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
        chunks.append(torch.softmax(torch.from_numpy(logits), dim=1))
    return torch.cat(chunks)


def onnx_parity(onnx_path: Path, model: LoadedModel, tiles: np.ndarray,
                expected: torch.Tensor | None = None) -> float:
    """Largest |p_onnx - p_torchscript| over the tiles and classes (``expected``: the
    TorchScript probabilities, when already computed)."""
    if expected is None:
        expected = torch.cat([model.probabilities(tiles[i : i + 2048])
                              for i in range(0, len(tiles), 2048)])
    got = onnx_probabilities(onnx_session(onnx_path), model, tiles)
    return float((got - expected).abs().max())


# --- measurements and the card ----------------------------------------------------------------


def validation_metrics(model: LoadedModel, data: Path, training: dict[str, Any]) -> dict | None:
    """The shipped file on the validation split the checkpoint records, rebuilt from its seed
    and fraction; weighted to the natural class frequencies, as it was during training."""
    recipe = training.get("validation")
    if not recipe:
        return None
    images, labels, weights = validation_set(data, recipe)
    return metrics(split_probabilities(model, images), labels, model.labels, weights)


def confusions(probs: torch.Tensor, y: np.ndarray, labels: list[str]) -> dict[str, object]:
    """The most frequent (true -> predicted) mistakes and the weakest classes."""
    pred = probs.argmax(1).numpy()
    in_top3 = (probs.topk(3, dim=1).indices.numpy() == y[:, None]).any(1)
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y.astype(np.int64), pred), 1)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:20]
    pairs = [
        {"true": labels[i], "predicted": labels[j], "count": int(off[i, j])}
        for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
        if off[i, j] > 0
    ]
    support = matrix.sum(1)
    accuracy = np.divide(np.diag(matrix), support, out=np.zeros(n), where=support > 0)
    top3 = np.bincount(y[in_top3], minlength=n) / np.maximum(support, 1)
    weakest = [
        {"label": labels[i], "accuracy": round(float(accuracy[i]), 4),
         "top3": round(float(top3[i]), 4), "n": int(support[i])}
        for i in np.argsort(accuracy)[:12]
    ]
    ambiguous = {c for group in CASE_AMBIGUOUS for c in group}
    errors = int(off.sum())
    within = sum(int(off[i, j]) for i in range(n) for j in range(n)
                 if labels[i] in ambiguous and any(labels[i] in g and labels[j] in g
                                                   for g in CASE_AMBIGUOUS))
    return {"pairs": pairs, "weakest_classes": weakest, "errors": errors,
            "errors_within_ambiguous_groups": within}


def _figure(m: dict[str, Any], key: str) -> str:
    low, high = m[f"{key}_ci95"]
    return f"{m[key]:.2%} [{low:.2%}, {high:.2%}]"


def _metrics_rows(manifest: Manifest) -> str:
    rows = []
    validation = manifest.metrics.get("validation")
    if validation:
        rows.append(f"| `validation` ({validation['n']:,} images, weighted to the natural class "
                    f"mix: effective n {validation['n_effective']:,}) | "
                    f"{_figure(validation, 'top1')} | {_figure(validation, 'top3')} | "
                    f"{_figure(validation, 'top1_case_insensitive')} |")
    test = manifest.metrics["test"]
    if "top1_ci95" in test:
        rows.append(f"| **`test`** ({test['n']:,} images, measured once) | "
                    f"**{_figure(test, 'top1')}** | **{_figure(test, 'top3')}** | "
                    f"{_figure(test, 'top1_case_insensitive')} |")
    else:
        rows.append(f"| `test` ({test['n']:,} images) | {test['top1']:.2%} | "
                    f"{test['top3']:.2%} | - |")
    rows.append(f"| original EdgeCNN on `test` | {BASELINE_TOP1:.1%} | - | - |")
    return "\n".join(rows)


def _selection(t: dict[str, Any]) -> str:
    v = t.get("validation")
    if t.get("selected_on") == "validation" and v:
        return (
            f"- Model selection on a validation split: a seeded (seed {v['seed']}), "
            f"class-stratified {v['fraction']:.0%} of `{'` + `'.join(v['from'])}` "
            f"({v['images']:,} images, `model/splits.py`), held out of training. The epoch and "
            "tau were chosen on it, weighted to the natural class frequencies; `test` was not "
            "read during training and was measured once, by the export.")
    return ("- Model selection (epoch, tau) on `test`: the test figures are therefore "
            "optimistic.")


def model_card(manifest: Manifest, mistakes: dict[str, Any]) -> str:
    test = manifest.metrics["test"]
    t = manifest.training
    pairs = "\n".join(f"| `{p['true']}` | `{p['predicted']}` | {p['count']} |"
                      for p in mistakes["pairs"])
    teachers = t.get("teachers", [])
    distillation = (f"distilled from {len(teachers)} wider teacher network(s) "
                    f"({', '.join(teachers)})" if teachers else "no distillation")
    weakest = "\n".join(f"| `{c['label']}` | {c['accuracy']:.1%} | {c['top3']:.1%} | {c['n']} |"
                        for c in mistakes["weakest_classes"])
    rare = ", ".join(f"`{c['label']}`" for c in mistakes["weakest_classes"] if c["accuracy"] < 0.1)
    groups = ", ".join(f"`{'/'.join(g)}`" for g in CASE_AMBIGUOUS if g.isalpha())
    ceiling = ""
    if "top1_case_insensitive" in test:
        share = mistakes["errors_within_ambiguous_groups"] / max(mistakes["errors"], 1)
        gap = (test["top1_case_insensitive"] - test["top1"]) * 100
        ceiling = f"""
## The 62-class ceiling

Byclass asks for the case of letters whose upper and lower case differ only in size
({groups}), and `0/O/o` and `1/I/l` also look alike as digit and letter. Every tile is
scaled to the same size, so the size is gone before the model sees it: for these classes a
single tile often does not say which answer is right, and the best a model can do is side with
the more frequent class. Counting a prediction anywhere in the true class's group as right,
top-1 on `test` is **{_figure(test, 'top1_case_insensitive')}** instead of {test['top1']:.2%}:
{share:.0%} of the {mistakes['errors']:,} top-1 errors on `test` are confusions within these
groups. That gap, {gap:.1f} points, is what the 62-class task costs on single tiles rather than
what this network misses; top-3 ({test['top3']:.2%}) nearly always holds the right member.
"""
    onnx = manifest.onnx
    onnx_model = ""
    onnx_usage = ""
    if onnx:
        onnx_model = (f"\n- ONNX: `{onnx['file']}` ({onnx['file_bytes']:,} bytes, sha256\n"
                      f"  `{onnx['sha256']}`), opset {onnx['opset']},\n"
                      f"  input `{onnx['input']['name']}` `[batch, 1, 28, 28]`, output "
                      f"`{onnx['output']['name']}` `[batch, 62]`, batch dimension free; its\n"
                      f"  probabilities equal the TorchScript file's within "
                      f"{onnx['max_abs_probability_diff_test']:.1e} on every `test` image.")
        onnx_usage = f"""
## Using the ONNX file on phones, browsers and boards

The service runs the TorchScript file; `{onnx['file']}` is the same network for other runtimes
(made from the frozen TorchScript by `python -m model.export --onnx`; no PyTorch needed to run
it). Give it what the service gives the TorchScript model: a float32 tensor `[N, 1, 28, 28]`,
the character upright, white ink on black, each pixel `(p / 255 - 0.5) / 0.5`, cropped and
centred like an EMNIST tile (see `shared/preprocess.py` for the full pipeline); the output is
62 logits, softmax gives probabilities, labels in order `0-9A-Za-z` (also stored in the file's
metadata, key `labels`).

- Python / desktop / ARM Linux boards (Raspberry Pi and the like): `pip install onnxruntime`,
  then `onnxruntime.InferenceSession("{onnx['file']}").run(["logits"], {{"input": x}})`.
- Browsers: `onnxruntime-web` (`ort.InferenceSession.create("{onnx['file']}")`, then
  `session.run({{input: new ort.Tensor("float32", pixels, [1, 1, 28, 28])}})`), WebAssembly or
  WebGPU backend; the file is small enough to ship with the page.
- Android and iOS: ONNX Runtime Mobile (`onnxruntime-android`, `onnxruntime-objc` /
  `onnxruntime-c` pods); `python -m onnxruntime.tools.convert_onnx_models_to_ort
  {onnx['file']}` makes the smaller `.ort` format for reduced builds.
- Other stacks (TensorFlow Lite, Core ML, TensorRT, microcontroller toolchains) import ONNX
  through their own converters; opset {onnx['opset']} and the plain operator set (Conv, Relu,
  Flatten, Gemm) keep that easy.

Checked in this project: onnxruntime on x86-64 CPUs only (parity above; speed in
`python -m model.benchmark`). The other runtimes are untested here.
"""
    held_out = " less the validation split" if t.get("validation") else ""
    return f"""# Model card: {manifest.name} {manifest.version}

Handwritten character classifier for EMNIST byclass: 62 classes `0-9A-Za-z`.
Generated by `python -m model.export` from the checkpoint of `python -m model.train`;
the numbers below were measured on the shipped file through the service's own loader.

## Model

- Architecture: `{manifest.architecture}`: three 3x3 convolutions, stride 2
  instead of pooling, batch-norm folded in; two fully connected layers.
- {manifest.parameters:,} parameters, {manifest.macs_per_image:,} multiply-accumulates per image.
- TorchScript: `{manifest.file}` ({manifest.file_bytes:,} bytes, sha256
  `{manifest.sha256}`), what the service runs.
- Input: `[N, 1, 28, 28]` float32, {manifest.input.orientation} (as a person reads the
  character), white ink on black, `(pixel / 255 - 0.5) / 0.5`. Output: logits.{onnx_model}

## Training

- Data: `{"` + `".join(t.get("splits", []))}`{held_out} ({t.get("images", 0):,}
  images, upright), random affine augmentation (rotation, shear, scale, shift), label smoothing,
  AdamW with a one-cycle schedule over {t.get("epochs", "?")} epochs, weight averaging (EMA);
  {distillation}.
- Prior correction: `extra` only holds 32 classes, so train+extra over-represents them. The
  logits are shifted by tau * log(p_natural / p_training), tau = {t.get("prior_correction_tau")},
  folded into the last layer's bias.
{_selection(t)}
- Trained on {t.get("device")} in {t.get("minutes")} minutes; best epoch {t.get("best_epoch")}.

## Metrics (95 % Wilson intervals)

| split | top-1 | top-3 | top-1, case-insensitive on ambiguous groups |
|---|---|---|---|
{_metrics_rows(manifest)}

At {test["n"]:,} test images an interval is about +/-0.6 points: differences between recipes
smaller than that are not resolved by `test`.
{ceiling}
## Most-confused pairs (true -> predicted, counts on `test`)

| true | predicted | count |
|---|---|---|
{pairs}

## Weakest classes (`test`)

| class | top-1 | top-3 | images |
|---|---|---|---|
{weakest}

## What it is not good at

- Letters whose upper and lower case differ only in size (`c/C`, `o/O`, `s/S`, `v/V`, `w/W`,
  `x/X`, `z/Z`, `k/K`, `p/P`, `u/U`): every image is normalised to the same size, so size is
  lost and the model can only fall back on how often each case occurs. The same holds for
  `0/O/o` and `1/l/I`. Most of the remaining error is here, and top-3 covers it.
- The prior correction maximises overall accuracy by siding with the more frequent case, so
  some rare classes are almost never the top answer ({rare or "none"}: top-1 below 10 % on
  `test`); they do appear in the top-3 (table above). A caller that must tell cases apart
  needs context (neighbouring characters, expected case) that a single image cannot give.
- Anything that is not a single isolated character: words, several characters, symbols and
  punctuation are forced into one of the 62 classes.
- Rare classes in EMNIST (e.g. `j`, `k`, `v`, `x`, `z` lower case) have few training images.
- Photos need a reasonably even background: the pipeline decides ink from contrast with it.
{onnx_usage}
## What was tried

- Before 1.1.0 the epoch and tau were chosen on `test` (1.0.0: 87.27 % top-1, the best of 60
  looks at `test`). Variants measured that way on an H100 (seeds 1 and 2, `train` only, weight
  decay 3e-3, 40 epochs, widths 24/48/64 with hidden 40, distillation from two 1.2M-parameter
  teachers) landed between 86.1 % and 87.3 %: none beat this recipe, and all those figures
  are optimistic.
- 1.1.0 is the same recipe, re-run with the validation split on a CPU, which chose the epoch
  and tau above. A first CPU run with 60 epochs reached 86.6 % top-1 on validation (best epoch
  40, tau 0.9; `test` not measured); 1.1.0 trains for 70. On the same validation images, the
  70-epoch recipe with training seed 1 reached 86.66 % [86.09, 87.21] (best epoch 31, tau 1.0),
  training on `train` alone (no `extra`) 86.47 % [85.90, 87.03], 40 epochs instead of 70
  86.42 % [85.84, 86.98], weight decay 3e-3 86.68 % [86.10, 87.23] (best epoch 40, tau 1.1),
  and widths 24/48/64 with hidden 40 86.74 % [86.17, 87.29] (best epoch 35, tau 0.9): all
  below 1.1.0's 86.85 %. None was exported, and `test` was not measured for any. Not re-run on
  validation: distillation (its two 1.2M-parameter teachers alone would take 10-20 hours on
  this CPU; its `test`-chosen figure was the lowest of all). Not tried for lack of time:
  refitting on all of `train` + `extra` with the epoch count and tau chosen here (the
  validation images would then be training data too).
- What bounds top-1 is mostly the ceiling above, not the network's size: the variants above,
  larger or distilled, moved top-1 by less than a point, while case-insensitive matching moves
  it by several.
"""


# --- the export -------------------------------------------------------------------------------


def write_model(net: torch.nn.Module, out_dir: Path, labels: list[str],
                training: dict[str, object] | None = None) -> tuple[Path, Path, Manifest]:
    """Freeze ``net`` into ``out_dir`` with a manifest describing it (metrics still empty)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, manifest_path = out_dir / MODEL_FILE, out_dir / "manifest.json"
    torch.jit.save(freeze(net), str(model_path))
    kwargs = ", ".join(f"{k}={v}" for k, v in getattr(net, "config", {}).items())
    manifest = Manifest(
        name=NAME, version=VERSION, file=MODEL_FILE, sha256=sha256_file(model_path),
        labels=tuple(labels), input=INPUT_SPEC, output="logits",
        architecture=f"{type(net).__name__}({kwargs})", parameters=count_parameters(net),
        macs_per_image=count_macs(net), file_bytes=model_path.stat().st_size,
        training=training or {},
    )
    manifest_path.write_text(manifest.to_json())
    return model_path, manifest_path, manifest


def add_onnx(model_path: Path, manifest: Manifest, served: LoadedModel, tiles: np.ndarray,
             expected: torch.Tensor) -> Manifest:
    """Write the ONNX file beside ``model_path``; check it on ``tiles`` against ``expected``
    (the TorchScript probabilities); return the manifest that describes it."""
    onnx_path = model_path.parent / ONNX_FILE
    description = export_onnx(model_path, onnx_path, manifest)
    worst = onnx_parity(onnx_path, served, tiles, expected)
    if not worst <= PARITY_TOLERANCE:
        onnx_path.unlink()
        raise RuntimeError(f"ONNX probabilities differ from TorchScript's by {worst:.2e} "
                           f"(> {PARITY_TOLERANCE:.0e}): not written")
    description["max_abs_probability_diff_test"] = float(f"{worst:.3g}")
    print(f"wrote {onnx_path} ({description['file_bytes']:,} bytes, opset {ONNX_OPSET}): "
          f"max |p_onnx - p_torchscript| {worst:.2e} on {len(tiles):,} test images")
    return dataclasses.replace(manifest, onnx=description)


def export(checkpoint_path: Path, out_dir: Path, data: Path, onnx: bool = False) -> Manifest:
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    net = build(checkpoint["arch"], **checkpoint["arch_kwargs"])
    net.load_state_dict(checkpoint["state_dict"])
    labels = load_labels(data)
    training = dict(checkpoint.get("training", {}))
    training.setdefault("epochs", checkpoint.get("config", {}).get("epochs"))
    model_path, manifest_path, manifest = write_model(net, out_dir, labels, training)
    served = load_model(model_path, manifest_path)
    measured: dict[str, Any] = {}
    validation = validation_metrics(served, data, training)
    if validation is not None:
        measured["validation"] = validation
        print(f"validation: {validation}")
    images, y = load_split(data, "test")  # read once, after every choice is made
    probs = split_probabilities(served, images)
    measured["test"] = metrics(probs, y, labels)
    manifest = dataclasses.replace(manifest, metrics=measured)
    if onnx:
        manifest = add_onnx(model_path, manifest, served, upright(images), probs)
    manifest_path.write_text(manifest.to_json())
    (out_dir / "MODEL_CARD.md").write_text(model_card(manifest, confusions(probs, y, labels)))
    print(f"exported {model_path} ({manifest.file_bytes:,} bytes): test {manifest.metrics['test']}")
    return manifest


def export_onnx_only(out_dir: Path, data: Path) -> Manifest:
    """Add the ONNX file to the model already in ``out_dir`` (manifest and card updated; the
    card's test figures are the manifest's, the confusions are recounted)."""
    model_path, manifest_path = out_dir / MODEL_FILE, out_dir / "manifest.json"
    served = load_model(model_path, manifest_path)
    images, y = load_split(data, "test")
    probs = split_probabilities(served, images)
    manifest = add_onnx(model_path, served.manifest, served, upright(images), probs)
    manifest_path.write_text(manifest.to_json())
    (out_dir / "MODEL_CARD.md").write_text(
        model_card(manifest, confusions(probs, y, list(manifest.labels))))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path,
                        help="training checkpoint (without it, --onnx converts the model in --out)")
    parser.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    parser.add_argument("--out", type=Path, default=Path("model"))
    parser.add_argument("--onnx", action="store_true",
                        help=f"also write {ONNX_FILE} (opset {ONNX_OPSET}, batch dimension free)")
    args = parser.parse_args(argv)
    if args.checkpoint:
        export(args.checkpoint, args.out, data_dir(args.data), onnx=args.onnx)
    elif args.onnx:
        export_onnx_only(args.out, data_dir(args.data))
    else:
        parser.error("give --checkpoint, --onnx or both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
