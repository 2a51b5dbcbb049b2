"""The dataset-condensation benchmark's augmentations, as its evaluation applies them to MNIST:
DSA's (`dsa_augment`, the DSA and DM papers' protocol) and the DC paper's own (`dc_augment`).

Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021), from VICO-UoE/DatasetCondensation
`utils.py` (`ParamDiffAug`, `DiffAugment`, the `rand_*` functions): in its default mode 'S' each
batch gets one transform family drawn uniformly from the strategy, applied with parameters drawn
per image (evaluation is not Siamese). For MNIST the strategy is `color_crop_cutout_scale_rotate`
(its readme: "color_crop_cutout_scale_rotate for the digit datasets ... as flip augmentation is
not good for digit datasets"). Everything acts on normalised images, so the zeros that the
crop's padding, the cutout and the resampling fill in are the mean pixel, as there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class DsaParams:
    """`ParamDiffAug`'s values (utils.py); `strategy` the transform families, '_'-separated.
    Also the schema of `train.dsa` (config.py)."""

    strategy: str = "color_crop_cutout_scale_rotate"
    scale: float = 1.2  # ratio_scale: x and y scaled by factors uniform in [1/scale, scale]
    rotate: float = 15.0  # ratio_rotate: degrees, uniform in [-rotate, rotate]
    crop_pad: float = 0.125  # ratio_crop_pad: shift by up to this share of the side
    cutout: float = 0.5  # ratio_cutout: a square of this share of the side set to zero
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def _rand(n: int, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=device)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def color(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """rand_brightness, rand_saturation, rand_contrast in turn (saturation is the identity on
    one channel: each pixel is its own channel mean)."""
    n, shape = len(x), (len(x), 1, 1, 1)
    x = x + (_rand(n, gen, x.device).view(shape) - 0.5) * p.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(n, gen, x.device).view(shape) * p.saturation) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(n, gen, x.device).view(shape) + p.contrast) + mean


def crop(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """rand_crop: a shift of up to int(side * crop_pad + 0.5) pixels each way, filled with zeros."""
    n, _, h, w = x.shape
    sh, sw = int(h * p.crop_pad + 0.5), int(w * p.crop_pad + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen, device=x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen, device=x.device)
    gx = (torch.arange(h, device=x.device).view(1, h, 1) + tx + 1).clamp(0, h + 1)
    gy = (torch.arange(w, device=x.device).view(1, 1, w) + ty + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    b = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[b, gx, gy].permute(0, 3, 1, 2)


def cutout(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """rand_cutout: a square of int(side * cutout + 0.5) pixels at a random centre set to zero."""
    n, _, h, w = x.shape
    ch, cw = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen, device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen, device=x.device)
    gx = (torch.arange(ch, device=x.device).view(1, ch, 1) + ox - ch // 2).clamp(0, h - 1)
    gy = (torch.arange(cw, device=x.device).view(1, 1, cw) + oy - cw // 2).clamp(0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[torch.arange(n, device=x.device).view(n, 1, 1), gx, gy] = 0
    return x * mask.unsqueeze(1)


def scale(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """rand_scale: x and y sampled at factors uniform in [1/scale, scale] (bilinear, zeros outside)."""
    n = len(x)
    sx = _rand(n, gen, x.device) * (p.scale - 1 / p.scale) + 1 / p.scale
    sy = _rand(n, gen, x.device) * (p.scale - 1 / p.scale) + 1 / p.scale
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def rotate(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """rand_rotate: a rotation uniform in [-rotate, rotate] degrees about the centre."""
    angle = (_rand(len(x), gen, x.device) - 0.5) * 2 * math.radians(p.rotate)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


FAMILIES: dict[str, Callable[[Tensor, DsaParams, torch.Generator], Tensor]] = {
    "color": color,
    "crop": crop,
    "cutout": cutout,
    "scale": scale,
    "rotate": rotate,
}


def dsa_augment(x: Tensor, p: DsaParams, gen: torch.Generator) -> Tensor:
    """DiffAugment in mode 'S': one family of `p.strategy` for the whole batch, drawn uniformly."""
    names = p.strategy.split("_")
    pick = int(torch.randint(len(names), (1,), generator=gen, device=gen.device).item())
    return FAMILIES[names[pick]](x, p, gen).contiguous(memory_format=torch.channels_last)


@dataclass
class DcAugParams:
    """The DC method's evaluation augmentation (utils.py `get_daparam` for MNIST, `augment`):
    per image one of `strategy`'s families, drawn uniformly. Also the schema of `train.dc_aug`."""

    strategy: str = "crop_scale_rotate"  # get_daparam: 'crop_scale_rotate' for MNIST ('noise' unused)
    crop: int = 4  # pixels of padding (the batch mean), then a crop at an offset in [0, 2 crop)
    scale: float = 0.2  # height and width each scaled by a factor uniform in [1 - scale, 1 + scale]
    rotate: int = 45  # degrees, an integer in [-rotate, rotate) (np.random.randint there)
    noise: float = 0.001  # Gaussian noise of this std, the fourth family


def _dc_crop(x: Tensor, p: DcAugParams, gen: torch.Generator, fill: Tensor) -> Tensor:
    """cropfun: padded by `crop` pixels of the batch mean, cut back at a random offset."""
    n, _, h, w = x.shape
    padded = F.pad(x - fill, [p.crop] * 4) + fill
    r = torch.randint(0, 2 * p.crop, (n, 1, 1), generator=gen, device=x.device)
    c = torch.randint(0, 2 * p.crop, (n, 1, 1), generator=gen, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + r
    cols = torch.arange(w, device=x.device).view(1, 1, w) + c
    b = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)


def _dc_scale(x: Tensor, p: DcAugParams, gen: torch.Generator, fill: Tensor) -> Tensor:
    """scalefun: height and width resized (nearest) by int(U(1 - s, 1 + s) x side) pixels about
    the centre, zeros outside (as there), as one affine resampling."""
    n, _, h, w = x.shape
    sh = (_rand(n, gen, x.device) * 2 * p.scale + 1 - p.scale).mul(h).floor() / h
    sw = (_rand(n, gen, x.device) * 2 * p.scale + 1 - p.scale).mul(w).floor() / w
    zero = torch.zeros_like(sh)
    theta = torch.stack([torch.stack([1 / sw, zero, zero], 1), torch.stack([zero, 1 / sh, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", align_corners=False)


def _dc_rotate(x: Tensor, p: DcAugParams, gen: torch.Generator, fill: Tensor) -> Tensor:
    """rotatefun: a rotation by an integer angle in [-rotate, rotate) about the centre, the
    corners filled with the batch mean (scipy's cubic spline there, bilinear here)."""
    n = len(x)
    angle = torch.randint(-p.rotate, p.rotate, (n,), generator=gen, device=x.device).float()
    angle = torch.deg2rad(angle)
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x - fill, theta) + fill


def _dc_noise(x: Tensor, p: DcAugParams, gen: torch.Generator, fill: Tensor) -> Tensor:
    """noisefun: Gaussian noise of std `noise`."""
    return x + p.noise * torch.randn(x.shape, generator=gen, device=x.device)


DC_FAMILIES: dict[str, Callable[[Tensor, DcAugParams, torch.Generator, Tensor], Tensor]] = {
    "crop": _dc_crop,
    "scale": _dc_scale,
    "rotate": _dc_rotate,
    "noise": _dc_noise,
}


def dc_augment(x: Tensor, p: DcAugParams, gen: torch.Generator) -> Tensor:
    """The DC paper's evaluation augmentation: each image gets one family of `p.strategy`, drawn
    uniformly per image; the fill of the crop's padding and the rotation's corners is the
    batch's mean pixel."""
    names = p.strategy.split("_")
    pick = torch.randint(len(names), (len(x),), generator=gen, device=gen.device).to(x.device)
    fill = x.mean()
    out = x.clone()
    for j, name in enumerate(names):
        rows = (pick == j).nonzero().flatten()
        if len(rows):
            out[rows] = DC_FAMILIES[name](x[rows], p, gen, fill)
    return out.contiguous(memory_format=torch.channels_last)
