"""The search's cheap screens: kernels, ridge solves and scores checked against direct computations."""

import numpy as np
import pytest
import torch

from mnist_pruning.model import LeNet5
from mnist_pruning.screens import (
    gradient_features,
    krr_predict,
    nn_screen,
    ntk_kernel,
    ntk_screen,
    rbf_kernel,
    rbf_screen,
)


def _autograd_gradient(net, xi, direction):
    net.zero_grad()
    (net(xi.unsqueeze(0)).squeeze(0) @ direction).backward()
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def test_the_ntk_is_the_dot_products_of_autograds_per_sample_gradients():
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    inits = [3, 7]
    expected = torch.zeros(5, 5, dtype=torch.float64)
    for seed in inits:
        torch.manual_seed(seed)
        net = LeNet5().eval()
        d = torch.randn(10, generator=torch.Generator().manual_seed(seed))
        d = d / d.norm()
        g = torch.stack([_autograd_gradient(net, xi, d) for xi in x]).double()
        assert torch.allclose(gradient_features(net, x, d, chunk=2).double(), g, rtol=1e-4, atol=1e-6)
        expected += g @ g.T
    kernel = ntk_kernel(LeNet5, x, x[:3], inits, chunk=2)
    assert kernel.shape == (5, 3)
    assert torch.allclose(kernel, expected[:, :3] / len(inits), rtol=1e-4, atol=1e-6)
    # a new init gives another kernel: the weights and the direction come from the seed
    assert not torch.allclose(ntk_kernel(LeNet5, x, x[:3], [11]), kernel)


def test_the_ridge_solve_equals_the_direct_inverse():
    rng = np.random.default_rng(0)
    a = torch.as_tensor(rng.normal(size=(6, 4)))
    h = torch.as_tensor(rng.normal(size=(9, 4)))
    k_ss, k_hs = a @ a.T, h @ a.T
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    lam = 0.3 * float(torch.diagonal(k_ss).mean())
    direct = (
        k_hs @ torch.linalg.inv(k_ss + lam * torch.eye(6, dtype=torch.float64)) @ torch.eye(3)[y].double()
    )
    assert torch.allclose(krr_predict(k_ss, k_hs, y, 3, 0.3), direct)


def _blobs(n_per, centres, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + 0.1 * rng.normal(size=(n_per, 2)) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per)
    return x, y


def test_rbf_and_nearest_neighbour_screens_score_candidates_on_the_holdout():
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    x, y = _blobs(20, centres, 0)
    xh, yh = _blobs(10, centres, 1)
    good = np.array([0, 20, 40])  # one point of each blob
    bad = np.array([0, 1, 20])  # no point of the third class
    for screen in (rbf_screen(x, y, xh, yh, ridge=1e-3), nn_screen(x, y, xh, yh)):
        assert screen(good) == 1.0
        assert screen(bad) == pytest.approx(2 / 3)
    # the RBF score is the argmax of the direct kernel ridge regression
    g = 0.5
    s = torch.as_tensor(x[good])
    k = rbf_kernel(s, s, g)
    pred = rbf_kernel(torch.as_tensor(xh), s, g) @ torch.linalg.solve(
        k + 1e-3 * torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    )
    expected = float((pred.argmax(1).numpy() == yh).mean())
    assert rbf_screen(x, y, xh, yh, ridge=1e-3, gamma=g)(good) == expected


def test_the_ntk_screen_is_krr_on_the_ntk_and_computes_each_image_once():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 28, 28, generator=gen)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    xh, yh = x[:4] + 0.01 * torch.randn(4, 1, 28, 28, generator=gen), y[:4]
    y_pool = np.zeros(20, dtype=np.int64)
    y_pool[10:18] = y  # pool rows 10..17 are the 8 images
    asked: list[int] = []

    def images(rows: np.ndarray) -> torch.Tensor:
        asked.extend(rows.tolist())
        return x[torch.as_tensor(rows - 10)]

    screen = ntk_screen(LeNet5, images, y_pool, xh, yh, inits=[0, 1], ridge=1e-6)
    # the holdout images are near copies of rows 10..13: a subset holding them gets them right
    assert screen(np.array([10, 11, 12, 13])) == 1.0
    rows = np.array([10, 11, 14, 17])
    kernel = ntk_kernel(LeNet5, torch.cat([xh, x[rows - 10]]), x[rows - 10], [0, 1])
    pred = krr_predict(kernel[4:], kernel[:4], torch.as_tensor(y[rows - 10]), 2, 1e-6)
    assert screen(rows) == float((pred.argmax(1).numpy() == yh).mean())
    assert sorted(asked) == [10, 11, 12, 13, 14, 17]  # each image's gradients once
