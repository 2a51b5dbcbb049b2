import math

import torch

from mnist_pruning.model import LeNet5
from mnist_pruning.training import Recipe, augment, batch_indices, normalize, train

RECIPE = Recipe(
    steps=30,
    batch_size=32,
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    warmup_steps=5,
    augment=True,
    aug_rotate=10.0,
    aug_translate=0.1,
    aug_scale=0.1,
    eval_every=10,
    eval_batch_size=64,
    log_every=0,
)


def toy_data(n: int = 100, seed: int = 0):
    """Images whose class is the row of a bright bar: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 30, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, c in enumerate(y.tolist()):
        images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
    return normalize(images, 0.1307, 0.3081), y


def test_lenet5_shape_and_size():
    model = LeNet5()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    # 156 + 2416 + 48120 + 10164 + 850 parameters, as in LeCun et al. (C1, C3, C5/F5, F6, out)
    assert sum(p.numel() for p in model.parameters()) == 61706


def test_training_is_deterministic_for_a_seed_and_learns():
    x, y = toy_data()
    curve = []
    a = train(
        x,
        y,
        {"test": (x, y)},
        RECIPE,
        seed=1,
        device=torch.device("cpu"),
        on_eval=lambda s, m: curve.append((s, m["test_acc"])),
    )
    b = train(x, y, {"test": (x, y)}, RECIPE, seed=1, device=torch.device("cpu"))
    assert a.metrics == b.metrics
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [s for s, _ in curve] == [10, 20, 30]
    assert curve[-1][1] == a.metrics["test_acc"]
    c = train(x, y, {"test": (x, y)}, RECIPE, seed=2, device=torch.device("cpu"))
    assert any(
        not torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(), c.model.parameters(), strict=True)
    )


def test_batches_cover_small_subsets_evenly():
    g = torch.Generator().manual_seed(0)
    idx = batch_indices(10, 4, 5, g)
    assert idx.shape == (5, 4)
    counts = torch.bincount(idx.flatten(), minlength=10)
    assert counts.tolist() == [2] * 10  # 20 draws = two full passes over 10 images


def test_augment_keeps_shape_and_is_identity_with_zero_ranges():
    x, _ = toy_data(8)
    g = torch.Generator().manual_seed(0)
    still = Recipe(**{**RECIPE.__dict__, "aug_rotate": 0.0, "aug_translate": 0.0, "aug_scale": 0.0})
    assert torch.allclose(augment(x, still, g), x, atol=1e-5)
    moved = augment(x, RECIPE, g)
    assert moved.shape == x.shape and not torch.allclose(moved, x)
    assert math.isclose(moved.min().item(), x.min().item(), abs_tol=1e-5)  # background stays black
