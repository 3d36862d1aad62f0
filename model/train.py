"""Training recipe: ``python -m model.train --data DIR`` writes model/emnist_edge.pt and friends.

Stages, each seeded:
0. validation split: ``--val-fraction`` of train+extra, stratified by class (``model.splits``),
   held out of training; every choice below is made on it, and ``test`` is not even loaded;
1. teachers: wide VGG-style networks trained on the rest (skipped with ``--teachers 0``);
2. student: EdgeNet trained on the rest, distilled from the teachers' averaged soft labels;
   the epoch whose weight average (EMA) scores best on validation is kept;
3. prior correction: ``extra`` holds only 32 classes, so train+extra over-represents them; the
   logits are shifted by tau * log(p_deployment / p_training), with p_deployment the class
   frequencies of ``train`` (the natural EMNIST distribution) and tau chosen on validation,
   weighted to those frequencies. The shift is folded into the last layer's bias, so the
   shipped model needs no extra step;
4. export: TorchScript, ONNX, manifest and model card (``model.export``), which measures
   validation and, once, ``test``.

Stages can also run alone (``--stage``), so that a machine with a GPU can train several
networks side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.architectures import NUM_CLASSES, build
from model.augment import random_affine
from model.data import data_dir
from model.evaluate import weighted_mean
from model.splits import (
    VALIDATION_FRACTION,
    VALIDATION_SEED,
    Split,
    load_pooled,
    natural_weights,
    stratified_split,
)
from shared.emnist import upright

NORM_MEAN, NORM_STD = 0.5, 0.5


@dataclass
class RunConfig:
    arch: str
    arch_kwargs: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    distill_alpha: float = 0.7
    distill_temperature: float = 2.0
    seed: int = 0
    extra: bool = True


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@dataclass
class Data:
    """Upright uint8 images as ``[N,1,28,28]`` tensors on the training device; ``val_w``
    weights validation images to the natural class frequencies."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    val_w: torch.Tensor
    training_prior: torch.Tensor
    deployment_prior: torch.Tensor


# The validation split is always carved from these, whatever trains: variants that train on
# less (``--no-extra``) are then scored on the very images the shipped model was chosen on.
POOLED = ["train", "extra"]


def load_data(directory: Path, device: torch.device, splits: list[str], val_fraction: float,
              val_seed: int) -> Data:
    """The validation split of ``POOLED``, and what is left of it in ``splits`` to train on."""
    images, labels, source = load_pooled(directory, POOLED)
    split = stratified_split(labels, val_fraction, val_seed)
    split = Split(train=split.train[np.isin(source[split.train],
                                            [POOLED.index(name) for name in splits])],
                  validation=split.validation)
    natural_labels = labels[source == POOLED.index("train")]  # train's natural frequencies

    def to_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(upright(array)).unsqueeze(1).to(device)

    def to_labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.int64)).to(device)

    counts = np.bincount(labels[split.train], minlength=NUM_CLASSES)
    natural = np.bincount(natural_labels, minlength=NUM_CLASSES)
    weights = natural_weights(labels[split.validation], natural_labels)
    return Data(
        train_x=to_tensor(images[split.train]),
        train_y=to_labels(labels[split.train]),
        val_x=to_tensor(images[split.validation]),
        val_y=to_labels(labels[split.validation]),
        val_w=torch.from_numpy(weights).float().to(device),
        training_prior=torch.from_numpy(counts / counts.sum()).float().to(device),
        deployment_prior=torch.from_numpy(natural / natural.sum()).float().to(device),
    )


def normalise(x_uint8_or_unit: torch.Tensor) -> torch.Tensor:
    x = x_uint8_or_unit
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return (x - NORM_MEAN) / NORM_STD


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(normalise(x[i : i + batch])).float() for i in range(0, len(x), batch)])


def prior_shift(data: Data) -> torch.Tensor:
    """log(p_deployment / p_training): what to add to the logits, per unit of tau."""
    return torch.log(data.deployment_prior) - torch.log(data.training_prior)


def top1(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> float:
    return weighted_mean(logits.argmax(1) == y, weights)


def choose_tau(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               shift: torch.Tensor) -> tuple[float, float]:
    """The prior-correction strength that scores best (ties go to the smaller correction)."""
    best = (0.0, top1(logits, y, weights))
    for tau in np.arange(0.1, 1.55, 0.1):
        score = top1(logits + float(tau) * shift, y, weights)
        if score > best[1] + 1e-9:
            best = (round(float(tau), 2), score)
    return best


def train_network(
    config: RunConfig,
    data: Data,
    device: torch.device,
    teacher_logits_fn=None,
    deadline: float | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Train one network; return the EMA weights of the epoch with the best weighted
    validation top-1 after prior correction."""
    seed_everything(config.seed)
    model = build(config.arch, **config.arch_kwargs).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    ema_buffers, model_buffers = list(ema.buffers()), list(model.buffers())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    n = len(data.train_x)
    steps_per_epoch = n // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.15
    )
    generator = torch.Generator(device=device).manual_seed(config.seed)
    shift = prior_shift(data)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    history: list[dict] = []
    best_state, best_score = None, -1.0
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.time()
        order = torch.randperm(n, generator=generator, device=device)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = random_affine(data.train_x[idx].float() / 255.0, generator)
            x = normalise(x)
            y = data.train_y[idx]
            with autocast if autocast is not None else torch.enable_grad():
                logits = model(x).float()
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                if teacher_logits_fn is not None:
                    t = config.distill_temperature
                    soft = F.log_softmax(teacher_logits_fn(x) / t, dim=1)
                    kd = F.kl_div(F.log_softmax(logits / t, 1), soft, log_target=True,
                                  reduction="batchmean") * t * t
                    loss = config.distill_alpha * kd + (1 - config.distill_alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, model_params, 1 - decay)
                torch._foreach_copy_(ema_buffers, model_buffers)
            running += loss.item() if i % 50 == 0 else 0.0
        logits = predict_logits(ema, data.val_x)
        raw = top1(logits, data.val_y, data.val_w)
        tau, adjusted = choose_tau(logits, data.val_y, data.val_w, shift)
        record = {"epoch": epoch, "val_top1": raw, "tau": tau, "val_top1_adjusted": adjusted,
                  "seconds": round(time.time() - started, 1)}
        history.append(record)
        log(f"{config.arch} epoch {epoch}/{config.epochs}: validation top-1 {raw:.4f}, "
            f"prior-corrected {adjusted:.4f} (tau {tau}), {record['seconds']} s")
        if adjusted > best_score:
            best_score, best_state = adjusted, copy.deepcopy(ema.state_dict())
        if deadline is not None and time.time() > deadline:
            log(f"deadline reached after epoch {epoch}: stopping early")
            break
    ema.load_state_dict(best_state)
    return ema, history


def ensemble_teacher(paths: list[Path], device: torch.device):
    """A function from a normalised batch to the teachers' mean log-probabilities."""
    teachers = []
    for path in paths:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
        net = build(checkpoint["arch"], **checkpoint["arch_kwargs"]).to(device).eval()
        net.load_state_dict(checkpoint["state_dict"])
        teachers.append(net)
    log(f"distilling from {len(teachers)} teacher(s)")

    @torch.no_grad()
    def logits(x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([F.softmax(t(x).float(), 1) for t in teachers]).mean(0)
        return torch.log(probs.clamp_min(1e-8))

    return logits


def save_checkpoint(path: Path, model: nn.Module, config: RunConfig, history: list[dict],
                    extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": config.arch, "arch_kwargs": config.arch_kwargs,
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "config": asdict(config), "history": history, **(extra or {})}, path)
    log(f"wrote {path}")


def fold_prior_shift(model: nn.Module, shift: torch.Tensor, tau: float) -> None:
    """Add tau * shift to the bias of the last Linear layer (the logits), in place."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias += tau * shift.to(last.bias.device)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    p.add_argument("--stage", choices=["all", "teacher", "student"], default="all")
    p.add_argument("--work", default="artifacts/train", help="checkpoints and logs")
    p.add_argument("--out", default="model", help="where the shipped files go")
    p.add_argument("--teachers", type=int, default=0,
                   help="teachers to distil from (0, the default: none; see MODEL_CARD.md)")
    p.add_argument("--teacher-epochs", type=int, default=30)
    p.add_argument("--teacher-width", type=int, default=64)
    p.add_argument("--teacher-ckpt", action="append", default=[],
                   help="(student stage) teacher file")
    p.add_argument("--epochs", type=int, default=70)
    p.add_argument("--widths", default="32,64,64")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-extra", action="store_true",
                   help="train on `train` only (validation is still carved from train+extra)")
    p.add_argument("--val-fraction", type=float, default=VALIDATION_FRACTION,
                   help="share of each class held out for validation")
    p.add_argument("--val-seed", type=int, default=VALIDATION_SEED)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--deadline-minutes", type=float, default=None,
                   help="safety net: stop a stage after this many minutes, keeping the best so far")
    p.add_argument("--name", default="student", help="checkpoint name for the student stage")
    p.add_argument("--no-export", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.time()
    deadline = started + args.deadline_minutes * 60 if args.deadline_minutes else None
    work = Path(args.work)
    directory = data_dir(args.data)
    splits = ["train"] if args.no_extra else ["train", "extra"]
    data = load_data(directory, device, splits, args.val_fraction, args.val_seed)
    log(f"data: {len(data.train_x)} training images, {len(data.val_x)} validation images "
        f"on {device}")

    teacher_paths = [Path(p) for p in args.teacher_ckpt]
    if args.stage in ("all", "teacher"):
        for k in range(args.teachers):
            seed = args.seed + 100 + k
            config = RunConfig(arch="teacher", arch_kwargs={"width": args.teacher_width},
                               epochs=args.teacher_epochs, lr=2e-3, seed=seed,
                               extra=not args.no_extra)
            net, history = train_network(config, data, device, deadline=deadline)
            path = work / f"teacher-{seed}.pt"
            save_checkpoint(path, net, config, history)
            teacher_paths.append(path)
    if args.stage == "teacher":
        return 0

    widths = tuple(int(w) for w in args.widths.split(","))
    config = RunConfig(arch="edgenet", arch_kwargs={"widths": widths, "hidden": args.hidden},
                       epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, seed=args.seed,
                       extra=not args.no_extra)
    teacher = ensemble_teacher(teacher_paths, device) if teacher_paths else None
    net, history = train_network(config, data, device, teacher, deadline=deadline)
    best = max(history, key=lambda r: r["val_top1_adjusted"])
    fold_prior_shift(net, prior_shift(data), best["tau"])
    check = top1(predict_logits(net, data.val_x), data.val_y, data.val_w)
    log(f"student best epoch {best['epoch']}: validation top-1 {check:.4f} (prior shift folded in)")
    training = {
        "splits": splits,
        "images": len(data.train_x),
        "selected_on": "validation",
        "validation": {"from": POOLED, "stratified_by": "class", "fraction": args.val_fraction,
                       "seed": args.val_seed, "images": len(data.val_x)},
        "teachers": [str(p.name) for p in teacher_paths],
        "prior_correction_tau": best["tau"],
        "epochs": len(history),
        "best_epoch": best["epoch"],
        "minutes": round((time.time() - started) / 60, 1),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    path = work / f"{args.name}.pt"
    save_checkpoint(path, net, config, history, {"training": training})
    (work / f"{args.name}.json").write_text(json.dumps({"training": training, "history": history}))
    if not args.no_export:
        from model.export import export

        export(path, Path(args.out), directory, onnx=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
