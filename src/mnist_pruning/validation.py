"""Checks that Hydra's types cannot express: ranges, names, and the command line before Hydra
composes, so that bad input is one line naming the key and what is allowed, before any
expensive work."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mnist_pruning.config import CONF_DIR, Config, ConfigError
from mnist_pruning.data import N_PIXELS, N_TRAIN

DEVICES = ("auto", "cpu", "cuda")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def schema_type(key: str) -> type | None:
    """The declared type of a dotted key of the schema (None: not a plain typed field)."""
    node: Any = Config
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    args = [a for a in typing.get_args(node) if a is not type(None)]
    node = args[0] if len(args) == 1 else node
    return node if node in (int, float, bool) else None


def _parses_as(value: str, kind: type) -> bool:
    if value in ("null", "None") or value.startswith("$"):
        return True
    if kind is bool:
        return value.lower() in ("true", "false")
    try:
        kind(value)
    except ValueError:
        return False
    return kind is not int or float(value).is_integer()


# launchers whose Hydra plugin comes with an extra of this package
LAUNCHER_PLUGINS = {"local": "hydra_submitit_launcher", "slurm": "hydra_submitit_launcher"}


def user_conf_dirs(argv: list[str]) -> list[Path]:
    """The folders a user added with --config-dir / -cd (their own experiment files, say)."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def check_launcher(choice: str) -> None:
    """A launcher whose plugin is not installed: one line naming the extra that brings it."""
    import importlib.util

    plugin = LAUNCHER_PLUGINS.get(choice)
    if plugin and importlib.util.find_spec(f"hydra_plugins.{plugin}") is None:
        raise ConfigError(
            f"hydra/launcher={choice} needs the submitit plugin: pip install 'mnist-pruning[cluster]' "
            "(hydra/launcher=joblib runs parallel jobs on this machine with the base install)"
        )


def check_choices(overrides: list[str], conf_dir: Path = CONF_DIR, extra_dirs: list[Path] = ()) -> None:
    """Unknown options of a config group (`selector=nearst`, also inside a sweep list), values
    of the wrong type (`k=abc`) and launchers whose plugin is missing, as one line naming the key
    and what is allowed, before Hydra composes anything. `extra_dirs` are --config-dir folders."""
    names = {int: "an integer", float: "a number", bool: "true or false"}
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or any(c in value for c in "()[]{}*"):
            continue
        kind = schema_type(key)
        if kind is not None:
            for item in value.split(","):
                if not _parses_as(item.strip(), kind):
                    raise ConfigError(f"{key}={item.strip()!r} is not allowed: {names[kind]}")
        groups = [d / key for d in (conf_dir, *extra_dirs) if (d / key).is_dir()]
        if key == "hydra/launcher":
            for choice in value.split(","):
                check_launcher(choice.strip())
        if "/" in key or not groups:
            continue
        options = sorted({p.stem for g in groups for p in g.glob("*.yaml")})
        for choice in value.split(","):
            if choice.strip() not in options:
                raise ConfigError(f"{key}={choice.strip()!r} is not allowed: one of {', '.join(options)}")


def validate(cfg: DictConfig) -> None:
    """Check names and ranges; raise ConfigError with a one-line message on the first problem."""
    from mnist_pruning.embed import EMBEDDINGS
    from mnist_pruning.selectors import CLUSTER_SELECTORS, SCORED_SELECTORS, SELECTORS
    from mnist_pruning.selectors.scored import KEEP

    names = ", ".join(sorted(SELECTORS))
    _check(cfg.selector.name in SELECTORS, "selector", cfg.selector.name, f"one of {names}")
    emb_names = ", ".join(sorted(EMBEDDINGS))
    _check(cfg.embedding.name in EMBEDDINGS, "embedding", cfg.embedding.name, f"one of {emb_names}")

    pool = N_TRAIN - cfg.data.validation_size
    _check(
        0 <= cfg.data.validation_size < N_TRAIN,
        "data.validation_size",
        cfg.data.validation_size,
        f"an integer from 0 to {N_TRAIN - 1}",
    )
    rule = cfg.selector.name
    if rule == "search":  # its own held-out split comes out of the pool; its base ranks images
        pool = _validate_search(cfg.selector, cfg.k, pool)
        rule = cfg.selector.base
    if cfg.selector.name != "full":
        _check(1 <= cfg.k <= pool, "k", cfg.k, f"an integer from 1 to {pool} (the selection pool)")
    _check(
        cfg.pca_dims is None or 1 <= cfg.pca_dims <= N_PIXELS,
        "pca_dims",
        cfg.pca_dims,
        f"null (raw pixels) or an integer from 1 to {N_PIXELS}",
    )
    dims = cfg.embedding.dims
    _check(
        dims is None or 1 <= dims <= N_PIXELS,
        "embedding.dims",
        dims,
        f"null or an integer from 1 to {N_PIXELS}",
    )
    if cfg.embedding.name == "classifier":
        _check(dims in (None, 84), "embedding.dims", dims, "84 (LeNet-5's penultimate layer) or null")
    # a search's cluster base may leave clusters null (k clusters); set, it is checked as the base's
    clustered = cfg.selector.name in CLUSTER_SELECTORS
    if clustered or (rule in CLUSTER_SELECTORS and cfg.selector.clusters is not None):
        c = cfg.selector.clusters
        _check(
            c is not None and 1 <= c <= min(cfg.k, pool),
            "selector.clusters",
            c,
            f"an integer from 1 to k={cfg.k} (at least one kept image per cluster)",
        )
    sel = cfg.selector
    _check(sel.neighbors >= 1, "selector.neighbors", sel.neighbors, "an integer >= 1")
    if rule == "probcover":
        delta_ok = sel.delta is None or sel.delta > 0
        _check(delta_ok, "selector.delta", sel.delta, "null (the purity rule) or a number > 0")
        _check(0 < sel.purity <= 1, "selector.purity", sel.purity, "a number in (0, 1]")
    _check(0 <= sel.easy_fraction <= 1, "selector.easy_fraction", sel.easy_fraction, "a number in [0, 1]")
    if rule in SCORED_SELECTORS:
        _check(sel.keep in KEEP, "selector.keep", sel.keep, f"one of {', '.join(KEEP)}")
        _validate_scored(sel, rule)
        kind = sel.difficulty if rule == "ccs" else rule
        least = 2 if kind == "forgetting" else 1  # an event needs two presentations
        _check(sel.score.epochs >= least, "selector.score.epochs", sel.score.epochs, f"an integer >= {least}")
        _check(sel.score.inits >= 1, "selector.score.inits", sel.score.inits, "an integer >= 1")
    t = cfg.train
    regimes = ", ".join(t.regimes)
    _check(t.regime in t.regimes, "train.regime", t.regime, f"one of {regimes} (conf/train)")
    _check(t.steps >= 1, "train.steps", t.steps, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "a number > 0")
    _check(0 <= t.momentum < 1, "train.momentum", t.momentum, "a number in [0, 1)")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "a number >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "an integer >= 0")
    _check(t.elastic_alpha >= 0, "train.elastic_alpha", t.elastic_alpha, "a number >= 0 (0: off)")
    _check(t.elastic_sigma > 0, "train.elastic_sigma", t.elastic_sigma, "a number of pixels > 0")
    _check(0 <= t.label_smoothing < 1, "train.label_smoothing", t.label_smoothing, "a number in [0, 1)")
    _check(t.eval_every >= 0, "train.eval_every", t.eval_every, "0 (off) or an integer >= 1")
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", t.eval_batch_size, "an integer >= 1")
    _validate_schedule(t)
    _validate_model(cfg.model)
    _check(cfg.kmeans.max_iter >= 1, "kmeans.max_iter", cfg.kmeans.max_iter, "an integer >= 1")
    _check(cfg.device in DEVICES, "device", cfg.device, f"one of {', '.join(DEVICES)}")
    _check(
        cfg.threads is None or cfg.threads >= 1,
        "threads",
        cfg.threads,
        "null (torch's default) or an integer >= 1",
    )
    _check(cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    for key, value in (("embedding.seed", cfg.embedding.seed), ("selector.score.seed", sel.score.seed)):
        _check(value is None or value >= 0, key, value, "null (the run's seed) or an integer >= 0")
    if cfg.selector.name == "fixed":  # reads the file or the run's artifact: small, and before any data
        from mnist_pruning.fixed import given_indices

        given_indices(cfg)


def _validate_schedule(t: DictConfig) -> None:
    """An epoch schedule, the step decay and the benchmark's augmentation (conf/train/dc_protocol)."""
    from mnist_pruning.dsa import FAMILIES
    from mnist_pruning.training import AUGMENTATIONS, OPTIMIZERS, SCHEDULES

    _check(t.optimizer in OPTIMIZERS, "train.optimizer", t.optimizer, f"one of {', '.join(OPTIMIZERS)}")
    _check(t.epochs is None or t.epochs >= 1, "train.epochs", t.epochs, "null (steps) or an integer >= 1")
    _check(t.schedule in SCHEDULES, "train.schedule", t.schedule, f"one of {', '.join(SCHEDULES)}")
    if t.schedule == "step":
        _check(
            t.epochs is not None, "train.schedule", t.schedule, "warmup_cosine, or step with train.epochs set"
        )
        ok = all(1 <= e < t.epochs for e in t.lr_decay_epochs)
        _check(ok, "train.lr_decay_epochs", list(t.lr_decay_epochs), f"epochs from 1 to {t.epochs - 1}")
        _check(0 < t.lr_decay <= 1, "train.lr_decay", t.lr_decay, "a number in (0, 1]")
    _check(
        t.augmentation in AUGMENTATIONS,
        "train.augmentation",
        t.augmentation,
        f"one of {', '.join(AUGMENTATIONS)}",
    )
    if t.augmentation == "dc":
        from mnist_pruning.dsa import DC_FAMILIES

        ok = all(part in DC_FAMILIES for part in str(t.dc_aug.strategy).split("_"))
        families = ", ".join(DC_FAMILIES)
        _check(ok, "train.dc_aug.strategy", t.dc_aug.strategy, f"families joined by '_', of {families}")
        _check(t.dc_aug.crop >= 1, "train.dc_aug.crop", t.dc_aug.crop, "an integer >= 1 (pixels)")
        _check(0 <= t.dc_aug.scale < 1, "train.dc_aug.scale", t.dc_aug.scale, "a number in [0, 1)")
        _check(t.dc_aug.rotate >= 1, "train.dc_aug.rotate", t.dc_aug.rotate, "an integer >= 1 (degrees)")
    if t.augmentation == "dsa":
        parts = str(t.dsa.strategy).split("_")
        ok = all(p in FAMILIES for p in parts)
        _check(ok, "train.dsa.strategy", t.dsa.strategy, f"families joined by '_', of {', '.join(FAMILIES)}")


def _validate_model(m: DictConfig) -> None:
    from mnist_pruning.model import MODELS

    _check(m.name in MODELS, "model", m.name, f"one of {', '.join(MODELS)}")
    if m.name == "convnet3":
        _check(m.width >= 1, "model.width", m.width, "an integer >= 1")
        _check(1 <= m.depth <= 5, "model.depth", m.depth, "an integer from 1 to 5 (32 px halved per block)")
    if m.name == "mlp":
        ok = len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden)
        _check(ok, "model.hidden", list(m.hidden), "a list of one or more widths >= 1")


def _validate_search(sel: DictConfig, k: int, pool: int) -> int:
    """`selector=search`'s own settings; returns the pool its base selects from (the pool less
    the search's held-out split)."""
    from mnist_pruning.selectors import SELECTORS
    from mnist_pruning.selectors.search import CANDIDATES, NOT_A_BASE

    bases = sorted(set(SELECTORS) - set(NOT_A_BASE))
    _check(sel.base in bases, "selector.base", sel.base, f"one of {', '.join(bases)}")
    s = sel.search
    most = pool - k
    _check(
        1 <= s.holdout <= most,
        "selector.search.holdout",
        s.holdout,
        f"an integer from 1 to {most} (pool - k)",
    )
    seed_ok = s.holdout_seed is None or s.holdout_seed >= 0
    _check(
        seed_ok, "selector.search.holdout_seed", s.holdout_seed, "null (the run's seed) or an integer >= 0"
    )
    _check(s.draws >= 1, "selector.search.draws", s.draws, "an integer >= 1")
    _check(
        s.evaluations >= 0,
        "selector.search.evaluations",
        s.evaluations,
        "an integer >= 0 (0: the base's subset)",
    )
    _check(
        s.candidates in CANDIDATES,
        "selector.search.candidates",
        s.candidates,
        f"one of {', '.join(CANDIDATES)}",
    )
    _check(s.width >= 1, "selector.search.width", s.width, "an integer >= 1")
    p = s.proxy
    _check(p.steps >= 1, "selector.search.proxy.steps", p.steps, "an integer >= 1")
    _check(p.batch_size >= 1, "selector.search.proxy.batch_size", p.batch_size, "an integer >= 1")
    _check(p.seeds >= 1, "selector.search.proxy.seeds", p.seeds, "an integer >= 1")
    ok = 1 <= p.eval_size <= s.holdout
    _check(
        ok, "selector.search.proxy.eval_size", p.eval_size, f"an integer from 1 to {s.holdout} (the holdout)"
    )
    _validate_proxy_recipe(p)
    _validate_portfolio(s, bases)
    c = s.screen
    from mnist_pruning.screens import SCREENS

    _check(c.name in SCREENS, "selector.search.screen.name", c.name, f"one of {', '.join(SCREENS)}")
    _check(c.draws >= 0, "selector.search.screen.draws", c.draws, "an integer >= 0 (0: no draw screened)")
    _check(c.swaps >= 1, "selector.search.screen.swaps", c.swaps, "an integer >= 1 (1: no swap screened)")
    ok = c.greedy == 0 or (c.greedy >= 1 and c.name != "none")
    _check(ok, "selector.search.screen.greedy", c.greedy, "0, or an integer >= 1 with a screen (screen.name)")
    _check(c.ridge > 0, "selector.search.screen.ridge", c.ridge, "a number > 0")
    _check(1 <= c.pca_dims <= 784, "selector.search.screen.pca_dims", c.pca_dims, "an integer from 1 to 784")
    _check(c.inits >= 1, "selector.search.screen.inits", c.inits, "an integer >= 1")
    ok = c.eval_size is None or 1 <= c.eval_size <= s.holdout
    _check(ok, "selector.search.screen.eval_size", c.eval_size, f"null (the proxy's) or 1 to {s.holdout}")
    return pool - s.holdout


def _validate_proxy_recipe(p: DictConfig) -> None:
    """The search proxy's own recipe and trainers (null: the run's value)."""
    from mnist_pruning.model import MODELS
    from mnist_pruning.training import OPTIMIZERS

    ok = p.optimizer is None or p.optimizer in OPTIMIZERS
    _check(
        ok,
        "selector.search.proxy.optimizer",
        p.optimizer,
        f"null (the run's) or one of {', '.join(OPTIMIZERS)}",
    )
    _check(p.lr is None or p.lr > 0, "selector.search.proxy.lr", p.lr, "null (the run's) or a number > 0")
    ok = p.weight_decay is None or p.weight_decay >= 0
    _check(ok, "selector.search.proxy.weight_decay", p.weight_decay, "null (the run's) or a number >= 0")
    _check(p.strength >= 0, "selector.search.proxy.strength", p.strength, "a number >= 0 (1: the run's maps)")
    ok = len(p.models) >= 1 and all(m in MODELS for m in p.models)
    _check(
        ok, "selector.search.proxy.models", list(p.models), f"a list of one or more of {', '.join(MODELS)}"
    )


def _validate_portfolio(s: DictConfig, allowed: list[str]) -> None:
    """`selector.search.bases`: rule or rule@embedding, each rule a base, each embedding a file;
    and the shortlist."""
    embeddings = sorted(f.stem for f in (CONF_DIR / "embedding").glob("*.yaml"))
    rules = [r for r in allowed if r not in ("uncertainty", "ccs")]  # their score kind is their own config
    for spec in s.bases:
        rule, _, name = str(spec).partition("@")
        _check(
            rule in rules,
            "selector.search.bases",
            spec,
            f"rule or rule@embedding, rule one of {', '.join(rules)}",
        )
        ok = not name or name in embeddings
        _check(ok, "selector.search.bases", spec, f"an embedding after @ one of {', '.join(embeddings)}")
    least = 1 + len(s.bases)
    _check(s.draws >= least, "selector.search.draws", s.draws, f"an integer >= {least}: a draw of each base")
    _check(s.shortlist >= 0, "selector.search.shortlist", s.shortlist, "an integer >= 0 (0: none)")
    ok = s.shortlist_seeds >= 1
    _check(ok, "selector.search.shortlist_seeds", s.shortlist_seeds, "an integer >= 1")


def _validate_scored(sel: DictConfig, rule: str) -> None:
    """The settings of uncertainty (its measure) and ccs (its difficulty score and strata)."""
    from mnist_pruning.scores import FROM_MODELS, SCORES, UNCERTAINTY

    if rule == "uncertainty":
        _check(
            sel.measure in UNCERTAINTY, "selector.measure", sel.measure, f"one of {', '.join(UNCERTAINTY)}"
        )
    if rule == "ccs":
        kinds = sorted({*FROM_MODELS, *SCORES})
        _check(sel.difficulty in kinds, "selector.difficulty", sel.difficulty, f"one of {', '.join(kinds)}")
        _check(0 <= sel.prune_hard < 1, "selector.prune_hard", sel.prune_hard, "a number in [0, 1)")
        _check(sel.strata >= 1, "selector.strata", sel.strata, "an integer >= 1")
