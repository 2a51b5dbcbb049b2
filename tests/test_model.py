"""The networks of the model group, and that adding the group left every earlier run's identity alone."""

import csv

import pytest
import torch

from conftest import REPO
from mnist_pruning.config import register_configs
from mnist_pruning.model import MODELS, ConvNet, LeNet5, build_model
from mnist_pruning.tracking import config_hash, run_name, run_params

register_configs()


def test_convnet3_is_the_benchmarks_network_for_28_by_28_digits():
    """networks.py ConvNet, width 128, depth 3, instancenorm, avgpooling, MNIST: the first
    convolution pads by 3 (28 -> 32), three blocks halve 32 to 4, a linear layer on 128 x 4 x 4."""
    net = build_model("convnet3", width=128, depth=3)
    assert isinstance(net, ConvNet)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert [c.padding for c in convs] == [(3, 3), (1, 1), (1, 1)] and {c.kernel_size for c in convs} == {
        (3, 3)
    }
    assert [(n.num_groups, n.num_channels) for n in norms] == [(128, 128)] * 3  # one group a channel
    assert len(pools) == 3 and net.classifier.in_features == 128 * 4 * 4
    expected = (9 * 1 * 128 + 128) + 2 * (9 * 128 * 128 + 128) + 3 * 2 * 128 + (2048 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected == 317_706
    x = torch.randn(5, 1, 28, 28)
    assert net.features(x).shape == (5, 128, 4, 4) and net(x).shape == (5, 10)


def test_mlp_and_lenet5_by_name():
    mlp = build_model("mlp", hidden=[128])
    assert sum(p.numel() for p in mlp.parameters()) == 784 * 128 + 128 + 128 * 10 + 10
    assert sum(p.numel() for p in build_model("mlp", hidden=[128, 128]).parameters()) == 118_282  # DC's MLP
    assert isinstance(build_model(), LeNet5) and set(MODELS) == {"lenet5", "convnet3", "mlp"}
    with pytest.raises(ValueError, match="model='vgg' is unknown: one of lenet5, convnet3, mlp"):
        build_model("vgg")


def test_the_model_is_a_param_and_in_the_run_name_unless_lenet5(make_cfg):
    cfg = make_cfg("selector=random", "k=10", "selector.balance=true")
    assert cfg.model.name == "lenet5" and run_params(cfg)["model.name"] == "lenet5"
    assert run_name(cfg) == "random-k10-bal-s0"
    other = make_cfg(
        "selector=random", "k=10", "selector.balance=true", "model=convnet3", "train=dc_protocol"
    )
    assert run_name(other) == "random-k10-bal-convnet3-s0"
    params = run_params(other)
    assert params["model.name"] == "convnet3" and params["model.width"] == 128
    assert params["train.augmentation"] == "dsa" and params["train.dsa.strategy"].startswith("color")
    assert config_hash(other) != config_hash(
        make_cfg("selector=random", "k=10", "selector.balance=true", "model=mlp", "train=dc_protocol")
    )


def _committed_hashes(study: str) -> set[str]:
    with open(REPO / "results" / study / "runs.csv") as f:
        return {row["config_hash"] for row in csv.DictReader(f)}


# the `large` regime until 2026-12-07 (RESULTS.md, "The recipe"): the earlier tables reproduce with it
EARLIER_LARGE = [
    "train.steps=3000",
    "train.weight_decay=5e-4",
    "train.aug_rotate=30",
    "train.aug_scale=0.2",
    "train.elastic_alpha=34",
    "train.label_smoothing=0",
]


@pytest.mark.parametrize(
    ("study", "overrides"),
    [
        # full data's committed runs trained in the `full` regime, since replaced by `all` for it
        ("baselines", ["selector=full", "selector.balance=true", "train.regime=full", "seed=0"]),
        # k = 1,500 trained in the `large` regime before tune_sizes re-chose it: its values then
        ("baselines", ["selector=random", "k=1500", "seed=2", *EARLIER_LARGE]),
        ("search", ["+experiment=search", "k=10", "selector.search.evaluations=0", "seed=1"]),
        ("search", ["+experiment=search", "k=20", "selector.search.evaluations=60", "seed=3"]),
        # the first generation pinned: its runs' hashes, whatever selector=search's defaults become
        ("search", ["selector=search_first", "embedding=autoencoder", "k=20", "seed=3"]),
        ("search", ["selector=search_first", "embedding=autoencoder", "k=10", "seed=0"]),
    ],
)
def test_the_default_model_and_recipe_leave_every_committed_config_hash_unchanged(make_cfg, study, overrides):
    """Runs recorded before the model group and the epoch schedule existed keep their hash, so
    resume still finds them: the composed config of a committed run hashes as it did."""
    cfg = make_cfg(*overrides)
    assert config_hash(cfg) in _committed_hashes(study)
    assert not any(k.startswith(("train.epochs", "train.dsa", "train.schedule")) for k in run_params(cfg))
