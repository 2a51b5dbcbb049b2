import math
import threading
import time

import pytest
import torch

from mnist_pruning.model import LeNet5
from mnist_pruning.training import Recipe, augment, batch_indices, elastic_field, normalize, train

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
    elastic_alpha=0.0,
    elastic_sigma=4.0,
    label_smoothing=0.0,
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


ELASTIC = Recipe(**{**RECIPE.__dict__, "elastic_alpha": 34.0, "elastic_sigma": 4.0})
STILL = {"aug_rotate": 0.0, "aug_translate": 0.0, "aug_scale": 0.0}


def test_elastic_field_is_seeded_smooth_and_of_the_asked_scale():
    a = elastic_field(64, 28, 34.0, 4.0, torch.Generator().manual_seed(3))
    b = elastic_field(64, 28, 34.0, 4.0, torch.Generator().manual_seed(3))
    c = elastic_field(64, 28, 34.0, 4.0, torch.Generator().manual_seed(4))
    assert a.shape == (64, 28, 28, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Simard et al.'s sigma 4, alpha 34: about 1.4 px typical displacement, smooth (neighbours
    # move together: a step to the next pixel changes the field far less than the field itself)
    assert 0.8 < a.std().item() < 2.5
    assert (a[:, :, 1:] - a[:, :, :-1]).abs().mean() < 0.25 * a.abs().mean()
    zero = elastic_field(4, 28, 0.0, 4.0, torch.Generator().manual_seed(3))
    assert torch.equal(zero, torch.zeros_like(zero))


def test_elastic_with_zero_alpha_and_no_affine_is_the_identity():
    x, _ = toy_data(8)
    still = Recipe(**{**RECIPE.__dict__, **STILL, "elastic_alpha": 0.0})
    assert torch.allclose(augment(x, still, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_elastic_moves_pixels_keeps_shape_and_background_and_is_seeded():
    x, _ = toy_data(16)
    only_elastic = Recipe(**{**ELASTIC.__dict__, **STILL})
    a = augment(x, only_elastic, torch.Generator().manual_seed(5))
    b = augment(x, only_elastic, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x, atol=1e-3)
    assert math.isclose(a.min().item(), x.min().item(), abs_tol=1e-5)  # background stays black
    # on a clean bar: its ink is kept and its centre moves by a couple of pixels at most
    bars = torch.zeros(16, 28, 28, dtype=torch.uint8)
    bars[:, 12:16, 4:24] = 255
    clean = normalize(bars, 0.1307, 0.3081)
    moved = augment(clean, only_elastic, torch.Generator().manual_seed(5)) - clean.min()
    ink = moved.sum(dim=(1, 2, 3))
    rows = torch.arange(28.0).view(1, 1, 28, 1)
    centre = (moved * rows).sum(dim=(1, 2, 3)) / ink
    ratio = ink / (clean - clean.min()).sum(dim=(1, 2, 3))
    assert ((ratio > 0.5) & (ratio < 2)).all()  # local stretching, no ink created or lost
    assert (centre - 13.5).abs().max() < 2.5


def test_label_smoothing_changes_training():
    x, y = toy_data()
    plain = train(x, y, {}, RECIPE, seed=1, device=torch.device("cpu"))
    smooth = Recipe(**{**RECIPE.__dict__, "label_smoothing": 0.2})
    smoothed = train(x, y, {}, smooth, seed=1, device=torch.device("cpu"))
    assert any(
        not torch.equal(p, q)
        for p, q in zip(plain.model.parameters(), smoothed.model.parameters(), strict=True)
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_sigterm_lost_in_a_finalizer_still_stops_training(monkeypatch):
    """The handler's KeyboardInterrupt is swallowed when it lands in a __del__ or weakref
    callback (as in CI: training went on for a minute); the flag it sets stops the next step."""
    import os
    import signal

    from mnist_pruning import train as entry

    monkeypatch.setattr(entry, "STOP", threading.Event())
    old = signal.getsignal(signal.SIGTERM)
    try:
        entry._stop_on_sigterm()

        class Finalized:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # the handler runs here, and its exception is ignored

        Finalized()  # dropped at once: __del__ swallows the interrupt
        assert entry.STOP.is_set()
        x, y = toy_data()
        answers = iter([False, False, True])  # asked before every step
        with pytest.raises(KeyboardInterrupt, match="before step 3"):
            train(x, y, {}, RECIPE, seed=0, device=torch.device("cpu"), should_stop=lambda: next(answers))
        with pytest.raises(KeyboardInterrupt, match="before step 1"):
            train(x, y, {}, RECIPE, seed=0, device=torch.device("cpu"), should_stop=entry.STOP.is_set)
    finally:
        signal.signal(signal.SIGTERM, old)
