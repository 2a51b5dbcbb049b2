"""What a run is and where it came from: its params (the flattened config), the hash that makes
`resume` find it again, its name in the UI, and the commit and host it ran on."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_pruning.config import SearchConfig, TrainConfig
from mnist_pruning.embed import SEEDED
from mnist_pruning.selectors import EMBEDDING_FREE, SCORED_SELECTORS

# keys that say where or how a run executes, not what it computes: left out of the config hash
NON_SEMANTIC_KEYS = (
    "mlflow",
    "cache",
    "data.root",
    "data.download",
    "data.verify",
    "threads",
    "device",
    "train.log_every",
    "train.eval_every",
    "train.eval_batch_size",
    "resume",
)
# tables a run picks its values from: the picked values are logged and hashed, not the tables
TABLE_KEYS = ("train.regimes", "train.regime_bounds", "tune")
HOST = socket.gethostname()


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}, over the resolved config, without the
    tables (TABLE_KEYS) whose picked values are keys of their own."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if _under(name, TABLE_KEYS):
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


LATER_TRAIN = (
    "epochs",
    "nesterov",
    "schedule",
    "lr_decay_epochs",
    "lr_decay",
    "reset_momentum",
    "augmentation",
    "optimizer",
    "dsa",
    "dc_aug",
)


def _flat_defaults() -> dict[str, Any]:
    """TrainConfig's defaults of the later keys, flattened (dsa.strategy, ...)."""
    node = OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=False)
    return flatten({k: node[k] for k in LATER_TRAIN})


LATER_SEARCH = ("screen", "bases", "shortlist", "shortlist_seeds")
LATER_PROXY = ("optimizer", "lr", "weight_decay", "strength", "elastic", "models")


def _search_defaults() -> dict[str, Any]:
    """The search's later keys at their defaults (no screen, no portfolio, no shortlist, the
    proxy the run's recipe cut short), flattened under selector.search."""
    node = OmegaConf.to_container(OmegaConf.structured(SearchConfig))
    later = {k: node[k] for k in LATER_SEARCH}
    later["proxy"] = {k: node["proxy"][k] for k in LATER_PROXY}
    return flatten(later, "selector.search.")


# keys added after runs were recorded, at the value every earlier run had without them: left out
# of the hash there, so an earlier run keeps its hash (resume finds it); the train.* ones are left
# out of the params there too, so a report over old and new runs reads them alike (the model is
# logged always: the report's `model` column fills it in for older runs)
LATER_KEYS: dict[str, Any] = {
    "model.name": "lenet5",
    **_search_defaults(),
    **{
        f"train.{key}": value
        for key, value in _flat_defaults().items()
        if key in LATER_TRAIN or key.split(".")[0] in LATER_TRAIN
    },
}


def _at_later_default(key: str, value: Any) -> bool:
    return key in LATER_KEYS and value == LATER_KEYS[key]


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The params a run logs: the flattened config; in a run of the steps recipe (every later
    train.* key at its default) without those keys, as runs were logged before them."""
    flat = flatten(cfg)
    later = {k: v for k, v in flat.items() if k.startswith("train.") and k in LATER_KEYS}
    if all(_at_later_default(k, v) for k, v in later.items()):
        return {k: v for k, v in flat.items() if k not in later}
    return flat


def config_hash(cfg: DictConfig) -> str:
    """Identifies a setting + seed: equal for two runs that must give the same result."""
    flat = {
        k: v
        for k, v in flatten(cfg).items()
        if not _under(k, NON_SEMANTIC_KEYS) and not _at_later_default(k, v)
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_name(cfg: DictConfig) -> str:
    """Say what the run is, e.g. nearest-k600-pca50-s0 or furthest-k600-c50-bal-ae64-s1. What
    picks the subset is in the name: the embedding (not for a selector that ignores it), and a
    learned fit's or the score trainings' seed where the config fixes it instead of following
    the run's seed (ae64e0: one autoencoder fit for every seed; ss2)."""
    sel = cfg.selector
    rule = sel.base if sel.name == "search" else sel.name  # a search is named with its base
    name = f"{rule}-{sel.keep}" if rule in SCORED_SELECTORS else rule
    if rule == "uncertainty":  # uncertainty-margin-hard
        name = f"{rule}-{sel.measure}-{sel.keep}"
    elif rule == "ccs":  # ccs-forgetting-b0.1 (its keep does not apply)
        name = f"ccs-{sel.difficulty}-b{sel.prune_hard:g}"
    parts = [f"search-{name}" if sel.name == "search" else name]
    if sel.name != "full":
        parts.append(f"k{cfg.k}")
    if sel.get("clusters") is not None and sel.clusters != cfg.k:
        parts.append(f"c{sel.clusters}")
    if sel.get("balance"):
        parts.append("bal")
    if sel.name not in EMBEDDING_FREE:
        emb = cfg.embedding
        short = {"autoencoder": "ae"}.get(emb.name, emb.name)
        short = short if emb.dims is None else f"{short}{emb.dims}"
        fixed = emb.name in SEEDED and emb.get("seed") is not None
        parts.append(f"{short}e{emb.seed}" if fixed else short)
    if rule in SCORED_SELECTORS and sel.score.seed is not None:
        parts.append(f"ss{sel.score.seed}")
    model = OmegaConf.select(cfg, "model.name", default="lenet5")
    if model != "lenet5":  # the study's network goes unnamed, as it did before there was a choice
        parts.append(model)
    label = OmegaConf.select(cfg, "mlflow.run_label", default=None)
    if label:  # a search and its control, or two generations of it, share everything else
        parts.append(str(label))
    parts.append(f"s{cfg.seed}")
    return "-".join(parts)


def clusters_rule(cfg: DictConfig) -> str:
    """How the cluster count follows k, for the report's curves: 'k', 'k/2' (hybrid's default),
    a fixed number, or '-' for a selector without clusters."""
    raw = OmegaConf.to_container(cfg.selector, resolve=False).get("clusters")
    if raw is None:
        return "-"
    text = str(raw).replace(" ", "")
    if text == "${k}":
        return "k"
    if text.startswith("${per_cluster:${k},") and text.endswith("}"):
        return f"k/{text.removeprefix('${per_cluster:${k},').removesuffix('}')}"
    return str(cfg.selector.clusters)


def git_commit() -> str:
    """The commit of this package's source tree, with '-dirty' if it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha
