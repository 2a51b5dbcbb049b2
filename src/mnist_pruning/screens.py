"""Cheap screens: what a search can judge thousands of candidate subsets with, in milliseconds,
before its LeNet-5 proxy (`proxy.py`) judges the survivors.

A screen has the proxy's interface, rows of the pool (a candidate subset) -> a score on the
search's holdout, and is built outside the selectors and passed in through `Options`, as the
proxy is. Each is a classifier fitted in closed form on the candidate's k images:

- kernel ridge regression (KRR) on one-hot labels, as bilevel coresets score a candidate
  (Borsos et al. 2020, with an NTK or an RBF kernel) and KIP learns images (Nguyen et al. 2021):
  `rbf_screen` on an embedding, `ntk_screen` on the empirical neural tangent kernel of LeNet-5
  at initialisation (per-sample gradients with `torch.func`, the kernel between the holdout and
  the candidate images computed once, so an evaluation is a k x k solve);
- `nn_screen`: 1-nearest-neighbour accuracy on an embedding.

The ridge is relative: `ridge` times the mean of the candidate kernel's diagonal, so one value
serves kernels of any scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

Screen = Callable[[np.ndarray], float]  # rows of the pool (a candidate subset) -> holdout accuracy
SCREENS = ("none", "rbf", "nn", "ntk")  # what `selector.search.screen.name` may name (subset.screen_of)


def krr_predict(k_ss: Tensor, k_hs: Tensor, y_s: Tensor, n_classes: int, ridge: float) -> Tensor:
    """Class scores of the held-out images under kernel ridge regression on one-hot targets:
    K_hs (K_ss + lambda I)^-1 Y, lambda = ridge x the mean diagonal of K_ss (float64 solve)."""
    k_ss, k_hs = k_ss.double(), k_hs.double()
    targets = torch.nn.functional.one_hot(y_s.long(), n_classes).double()
    lam = ridge * float(torch.diagonal(k_ss).mean().clamp_min(1e-12))
    alpha = torch.linalg.solve(k_ss + lam * torch.eye(len(k_ss), dtype=torch.float64), targets)
    return k_hs @ alpha


def _accuracy(scores: Tensor, labels: Tensor) -> float:
    return float((scores.argmax(1) == labels).double().mean())


def rbf_kernel(a: Tensor, b: Tensor, gamma: float) -> Tensor:
    """exp(-gamma ||a_i - b_j||^2)."""
    return torch.exp(-gamma * torch.cdist(a.double(), b.double()).square())


def median_gamma(x: Tensor, sample: int = 2000, seed: int = 0) -> float:
    """1 / the median squared distance between points of x (on a sample): the median heuristic."""
    g = torch.Generator().manual_seed(seed)
    s = x[torch.randperm(len(x), generator=g)[:sample]].double()
    d = torch.pdist(s).square()
    return 1.0 / float(d.median().clamp_min(1e-12))


def rbf_screen(
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_hold: np.ndarray,
    y_hold: np.ndarray,
    ridge: float,
    gamma: float | None = None,
) -> Screen:
    """score(rows): holdout accuracy of RBF kernel ridge regression fitted on the pool rows
    `rows` of an embedding; `gamma` null: the median heuristic on the pool."""
    xp, xh = torch.as_tensor(x_pool), torch.as_tensor(x_hold)
    yp, yh = torch.as_tensor(y_pool), torch.as_tensor(y_hold)
    n_classes = int(max(yp.max(), yh.max())) + 1
    g = median_gamma(xp) if gamma is None else gamma

    def score(rows: np.ndarray) -> float:
        s = xp[torch.as_tensor(rows)]
        pred = krr_predict(rbf_kernel(s, s, g), rbf_kernel(xh, s, g), yp[rows], n_classes, ridge)
        return _accuracy(pred, yh)

    return score


def nn_screen(x_pool: np.ndarray, y_pool: np.ndarray, x_hold: np.ndarray, y_hold: np.ndarray) -> Screen:
    """score(rows): holdout accuracy of 1-nearest-neighbour on the pool rows `rows` (Euclidean)."""
    xp, xh = torch.as_tensor(x_pool).double(), torch.as_tensor(x_hold).double()
    yp, yh = torch.as_tensor(y_pool), torch.as_tensor(y_hold)

    def score(rows: np.ndarray) -> float:
        nearest = torch.cdist(xh, xp[torch.as_tensor(rows)]).argmin(1)
        return float((yp[rows][nearest] == yh).double().mean())

    return score


def gradient_features(net: nn.Module, x: Tensor, direction: Tensor, chunk: int = 256) -> Tensor:
    """(n, parameters): the gradient of direction . net(x_i) with respect to every parameter, per
    image (torch.func), at the network's current weights: the features whose dot products are
    the empirical NTK along one output direction."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in net.named_parameters()}

    def along(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(net, p, (xi.unsqueeze(0),)).squeeze(0) @ direction

    per_sample = vmap(grad(along), in_dims=(None, 0))
    out = []
    for i in range(0, len(x), chunk):
        g = per_sample(params, x[i : i + chunk])
        out.append(torch.cat([v.reshape(len(v), -1) for v in g.values()], dim=1))
    return torch.cat(out)


def at_init(model: Callable[[], nn.Module], example: Tensor, seed: int) -> tuple[nn.Module, Tensor]:
    """`model()` initialised from `seed`, and a random unit direction in its output space (the
    same seed): one draw of the NTK estimate."""
    torch.manual_seed(seed)
    net = model().eval()
    with torch.no_grad():
        n_out = net(example).shape[1]
    direction = torch.randn(n_out, generator=torch.Generator().manual_seed(seed))
    return net, direction / direction.norm()


def ntk_kernel(
    model: Callable[[], nn.Module], a: Tensor, b: Tensor, inits: list[int], chunk: int = 1024
) -> Tensor:
    """(len a, len b): the empirical NTK of `model()` at initialisation, the mean over `inits`
    (each its own weights and one random unit output direction, an unbiased estimate of the
    kernel traced over the outputs, as neural-tangents' `trace_axes`) of the dot products of
    per-sample gradients. `b`'s features are held; `a`'s are streamed in chunks."""
    kernel = torch.zeros(len(a), len(b), dtype=torch.float64)
    for seed in inits:
        net, direction = at_init(model, a[:1], seed)
        fb = gradient_features(net, b, direction)
        for i in range(0, len(a), chunk):
            kernel[i : i + chunk] += (gradient_features(net, a[i : i + chunk], direction) @ fb.T).double()
    return kernel / len(inits)


def ntk_screen(
    model: Callable[[], nn.Module],
    images: Callable[[np.ndarray], Tensor],
    y_pool: np.ndarray,
    x_hold: Tensor,
    y_hold: np.ndarray,
    inits: list[int],
    ridge: float,
) -> Screen:
    """score(rows): holdout accuracy of kernel ridge regression under LeNet-5's (or `model`'s)
    empirical NTK at init (the mean over `inits`, as `ntk_kernel`). The holdout's per-sample
    gradients are computed here, once; a pool image's (`images(rows)`: normalised images of pool
    rows) when a candidate first holds it, then kept with its kernel column against the holdout,
    so that an evaluation is a k x k solve and a search pays for each image it tries once."""
    nets, directions = zip(*(at_init(model, x_hold[:1], seed) for seed in inits), strict=True)
    held = [gradient_features(net, x_hold, d) for net, d in zip(nets, directions, strict=True)]
    features: dict[int, list[Tensor]] = {}
    columns: dict[int, Tensor] = {}  # an image's kernel against the holdout, the mean over inits
    yp, yh = torch.as_tensor(y_pool), torch.as_tensor(y_hold)
    n_classes = int(max(yp.max(), yh.max())) + 1

    def score(rows: np.ndarray) -> float:
        new = np.array([r for r in dict.fromkeys(int(r) for r in rows) if r not in features], dtype=np.int64)
        if len(new):
            x = images(new)
            per_init = [gradient_features(net, x, d) for net, d in zip(nets, directions, strict=True)]
            cols = sum((h @ f.T).double() for h, f in zip(held, per_init, strict=True)) / len(nets)
            for i, r in enumerate(new):
                features[int(r)] = [f[i] for f in per_init]
                columns[int(r)] = cols[:, i]
        f_s = [torch.stack([features[int(r)][j] for r in rows]) for j in range(len(nets))]
        k_ss = sum((f @ f.T).double() for f in f_s) / len(nets)
        k_hs = torch.stack([columns[int(r)] for r in rows], 1)
        return _accuracy(krr_predict(k_ss, k_hs, yp[rows], n_classes, ridge), yh)

    return score
