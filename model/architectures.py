"""Network definitions: ours, the distillation teacher, and the original EdgeCNN baseline.

Ours is shaped by what runs fast on CPUs through oneDNN: dense 3x3 convolutions with stride 2
instead of pooling (PyTorch's NCHW max-pool and depthwise convolutions are slow paths that
dominate EdgeCNN's batch time), batch-norm that folds into the convolutions when frozen, and
few layers so that single-image latency stays low.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 62


def conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class EdgeNet(nn.Module):
    """Three convolutions (28 -> 14 -> 7 -> 7) and a two-layer head on the flattened 7x7 map."""

    def __init__(
        self, widths: tuple[int, int, int] = (32, 64, 64), hidden: int = 32, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.config = {"widths": tuple(widths), "hidden": hidden}
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, c1, stride=2),
            *conv_bn_relu(c1, c2, stride=2),
            *conv_bn_relu(c2, c3),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c3 * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Teacher(nn.Module):
    """A wider VGG-style network used only to distil into EdgeNet; never shipped."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *conv_bn_relu(1, w),
            *conv_bn_relu(w, w),
            nn.MaxPool2d(2),
            *conv_bn_relu(w, 2 * w),
            *conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *conv_bn_relu(2 * w, 4 * w),
            *conv_bn_relu(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w, NUM_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class EdgeCNN(nn.Module):
    """The original model this project replaces, re-created from its description (169,550
    parameters; raw EMNIST orientation; input normalised (x/255 - 0.5)/0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.Conv2d(16, 32, 1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.BatchNorm2d(48),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(48 * 7 * 7, 64),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(64, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(name: str, **kwargs: object) -> nn.Module:
    """Architecture by name, so a checkpoint can say what it holds."""
    registry: dict[str, type[nn.Module]] = {
        "edgenet": EdgeNet,
        "teacher": Teacher,
        "edgecnn": EdgeCNN,
    }
    if name not in registry:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(registry)}")
    return registry[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one 1x28x28 forward pass (convolutions and linear layers)."""
    total = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total
