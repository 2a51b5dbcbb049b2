"""The condensation benchmark's protocol (train=dc_protocol): an epoch schedule, the step decay
with a fresh optimizer, DSA augmentation, all as conf/train/dc_protocol.yaml writes them."""

import pytest
import torch
import yaml

from mnist_pruning.config import CONF_DIR, ConfigError, register_configs
from mnist_pruning.dsa import DC_FAMILIES, FAMILIES, DcAugParams, DsaParams, dc_augment, dsa_augment
from mnist_pruning.subset import recipe_of
from mnist_pruning.training import epoch_batches, lr_factor, train
from mnist_pruning.validation import validate

register_configs()


def test_the_protocol_resolves_to_the_values_of_its_file(make_cfg):
    written = yaml.safe_load((CONF_DIR / "train" / "dc_protocol.yaml").read_text())
    cfg = make_cfg("train=dc_protocol", "model=convnet3", "selector=random", "k=10")
    validate(cfg)
    t = cfg.train
    assert t.regime == "dc_protocol"
    for key in (
        "epochs",
        "momentum",
        "nesterov",
        "warmup_steps",
        "schedule",
        "lr_decay",
        "reset_momentum",
        "augmentation",
    ):
        assert t[key] == written[key], key
    assert t.batch_size == written["regimes"]["dc_protocol"]["batch_size"] == 256  # a regime's key
    assert list(t.lr_decay_epochs) == written["lr_decay_epochs"] == [502]
    assert dict(t.dsa) == written["dsa"]
    assert (
        dict(t.dc_aug)
        == written["dc_aug"]
        == {
            "strategy": "crop_scale_rotate",
            "crop": 4,
            "scale": 0.2,
            "rotate": 45,
            "noise": 0.001,
        }
    )  # utils.py get_daparam for MNIST
    regime = written["regimes"]["dc_protocol"]
    assert (
        (t.lr, t.weight_decay, t.label_smoothing, t.augment)
        == (regime["lr"], regime["weight_decay"], regime["label_smoothing"], regime["augment"])
        == (0.01, 5e-4, 0.0, True)
    )
    # the benchmark's numbers: 1,000 epochs + 1 (range(Epoch + 1)), batch 256, decay after epoch 501
    assert (t.epochs, t.batch_size, t.momentum, t.nesterov) == (1001, 256, 0.9, False)
    assert t.dsa.strategy == "color_crop_cutout_scale_rotate"  # no flip for digits
    # steps follow from the epochs: ceil(k / 256) updates an epoch
    assert t.steps == 1001
    assert make_cfg("train=dc_protocol", "selector=random", "k=500").train.steps == 2002
    r = recipe_of(cfg)
    assert r.epochs == 1001 and r.lr_decay_epochs == (502,) and r.dsa == DsaParams()


def test_an_epoch_schedule_passes_over_the_subset_with_a_partial_last_batch():
    gen = torch.Generator().manual_seed(0)
    batches, epoch_of = epoch_batches(10, 4, 3, gen)
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    assert epoch_of.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for e in range(3):
        seen = torch.cat(batches[3 * e : 3 * e + 3])
        assert sorted(seen.tolist()) == list(range(10))  # each image once an epoch


def test_the_step_decay_lowers_the_rate_from_its_epoch_and_resets_momentum(make_cfg):
    cfg = make_cfg(
        "train=dc_protocol", "selector=random", "k=10", "train.epochs=6", "train.lr_decay_epochs=[3]"
    )
    r = recipe_of(cfg)
    _, epoch_of = epoch_batches(10, 256, 6, torch.Generator().manual_seed(0))
    f = lr_factor(r, len(epoch_of), epoch_of)
    assert [f(i) for i in range(6)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1])
    x, y = torch.randn(10, 1, 28, 28), torch.arange(10)
    one = train(x, y, {"v": (x, y)}, r, seed=3, device=torch.device("cpu"), progress=False)
    two = train(x, y, {"v": (x, y)}, r, seed=3, device=torch.device("cpu"), progress=False)
    for a, b in zip(one.model.parameters(), two.model.parameters(), strict=True):
        assert torch.equal(a, b)  # deterministic for a seed
    kept = train(
        x,
        y,
        {"v": (x, y)},
        r.__class__(**{**r.__dict__, "reset_momentum": False}),
        seed=3,
        device=torch.device("cpu"),
        progress=False,
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(one.model.parameters(), kept.model.parameters(), strict=True)
    )


def test_dsa_draws_one_family_a_batch_keeps_shape_and_is_seeded():
    x = torch.randn(16, 1, 28, 28)
    p = DsaParams()
    a = dsa_augment(x, p, torch.Generator().manual_seed(1))
    b = dsa_augment(x, p, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    for name, fn in FAMILIES.items():
        out = fn(x.clone(), p, torch.Generator().manual_seed(0))
        assert out.shape == x.shape, name
    # crop shifts whole images by whole pixels, filling zeros; cutout zeroes a 14 x 14 square
    img = torch.ones(1, 1, 28, 28)
    cut = FAMILIES["cutout"](img, p, torch.Generator().manual_seed(0))
    assert 7 * 14 <= int((cut == 0).sum()) <= 14 * 14
    for seed in range(5):
        shifted = FAMILIES["crop"](img, p, torch.Generator().manual_seed(seed))[0, 0]
        rows, cols = shifted.any(1).sum().item(), shifted.any(0).sum().item()
        assert 24 <= rows <= 28 and 24 <= cols <= 28  # a shift of at most 4 pixels each way
        assert int(shifted.sum()) == rows * cols  # the image moved whole, zeros where it left


def test_dc_augmentation_draws_a_family_per_image_and_is_seeded():
    """The DC paper's augmentation: each image its own family; crop moves it by whole pixels
    with the batch mean as fill; seeded."""
    x = torch.randn(32, 1, 28, 28)
    p = DcAugParams()
    a = dc_augment(x, p, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, dc_augment(x, p, torch.Generator().manual_seed(1)))
    changed = (a != x).flatten(1).any(1)
    assert changed.float().mean() > 0.5  # crop by 0 in both directions, or a 0-degree turn, keeps a few
    for name, fn in DC_FAMILIES.items():
        assert fn(x, p, torch.Generator().manual_seed(0), x.mean()).shape == x.shape, name
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 10:18, 10:18] = 1.0
    fill = torch.tensor(-0.5)
    for seed in range(5):
        out = DC_FAMILIES["crop"](img, p, torch.Generator().manual_seed(seed), fill)[0, 0]
        assert int((out == 1).sum()) == 64  # the square moved whole (at most 4 pixels)
        assert set(out.unique().tolist()) <= {0.0, 1.0, -0.5}
    turned = DC_FAMILIES["rotate"](
        torch.zeros(1, 1, 28, 28), DcAugParams(rotate=45), torch.Generator().manual_seed(3), fill
    )
    assert turned.min() < -0.1  # the corners a turn uncovers are the fill


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.schedule=step", "train.epochs=null"], "train.schedule"),
        (["train.schedule=cosine"], "train.schedule"),
        (["train.augmentation=autoaugment"], "train.augmentation"),
        (["train=dc_protocol", "train.dsa.strategy=color_flip"], "train.dsa.strategy"),
        (
            ["train=dc_protocol", "train.augmentation=dc", "train.dc_aug.strategy=crop_flip"],
            "train.dc_aug.strategy",
        ),
        (["train=dc_protocol", "train.lr_decay_epochs=[2000]"], "train.lr_decay_epochs"),
        (["model=convnet3", "model.depth=6"], "model.depth"),
        (["model=mlp", "model.hidden=[]"], "model.hidden"),
    ],
)
def test_bad_schedule_and_model_values_are_one_line_errors(make_cfg, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        validate(make_cfg("selector=random", "k=10", *overrides))
    assert "\n" not in str(e.value)
