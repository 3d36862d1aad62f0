"""Handwriting-like augmentation on whole batches, on whatever device the batch lives on.

Small rotations, shears, anisotropic scaling and shifts mimic how people's strokes vary; the
ranges stay small because served images are normalised (cropped, centred, 2-px border) exactly
like the training tiles, so large shifts or zooms would only teach poses the model never sees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    rotate_deg: float = 10.0,
    shear: float = 0.15,
    scale: tuple[float, float] = (0.85, 1.08),
    shift: float = 0.08,
) -> torch.Tensor:
    """Apply an independent random affine warp to each image of ``x`` ``[N,1,H,W]`` (float)."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=x.device) * (hi - lo) + lo

    angle = uniform(-rotate_deg, rotate_deg) * (math.pi / 180.0)
    sh = uniform(-shear, shear)
    sx, sy = uniform(*scale), uniform(*scale)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output coordinates to input coordinates: inverse scale, rotate, shear.
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = cos / sx
    theta[:, 0, 1] = (-sin + sh * cos) / sx
    theta[:, 1, 0] = sin / sy
    theta[:, 1, 1] = (cos + sh * sin) / sy
    theta[:, 0, 2] = uniform(-shift, shift)
    theta[:, 1, 2] = uniform(-shift, shift)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
