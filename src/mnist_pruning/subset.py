"""The subset a run trains on: the fits behind it (an embedding, the score trainings, k-means,
the kNN graph, a search's proxy), each cached by its inputs, then the selector.

Everything random here follows the run's seed unless the config fixes a fit's own seed; the
test images never reach this module (a search scores on a holdout of the training pool).
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mnist_pruning.cache import Arrays, Cache, array_digest
from mnist_pruning.cluster import VERSION as KMEANS_VERSION
from mnist_pruning.cluster import KMeansFit, kmeans
from mnist_pruning.config import embedding_config, fit_seed
from mnist_pruning.data import Mnist
from mnist_pruning.dsa import DcAugParams, DsaParams
from mnist_pruning.embed import POOLED, SEEDED, SUPERVISED, embed, pca_with
from mnist_pruning.fixed import given_indices
from mnist_pruning.model import LeNet5, build_model
from mnist_pruning.neighbors import VERSION as KNN_VERSION
from mnist_pruning.neighbors import knn_graph
from mnist_pruning.proxy import ProxySettings, make_proxy, proxy_seeds
from mnist_pruning.scores import ScoreSettings, fit_models, models_from_arrays, models_to_arrays, pool_scores
from mnist_pruning.screens import Screen, nn_screen, ntk_screen, rbf_screen
from mnist_pruning.selectors import (
    EMBEDDING_FREE,
    SCORED_SELECTORS,
    BaseRule,
    Options,
    Proxy,
    SearchOptions,
    select,
)
from mnist_pruning.training import Recipe, normalize


def embedding_of(cfg: DictConfig, data: Mnist, pool: np.ndarray, cache: Cache) -> np.ndarray:
    """The embedding of all 60k training images (never the test images), cached; a supervised
    one (classifier) is fitted on the selection pool's images and labels only. A learned fit
    follows the run's seed unless `embedding.seed` fixes it; pca and pixels are one fit."""
    settings = OmegaConf.to_container(cfg.embedding, resolve=True)
    if cfg.embedding.name in SEEDED:
        settings["seed"] = fit_seed(settings["seed"], cfg.seed)
    else:
        del settings["seed"]
    key = {"data": data.fingerprint, **settings}
    fit: dict = {}
    if cfg.embedding.name in POOLED:
        key["rows"] = array_digest(pool)
        fit = {"rows": pool}
        if cfg.embedding.name in SUPERVISED:
            fit["labels"] = data.train_labels.numpy()
    arrays = cache.get("embedding", key, lambda: {"x": embed(data.train_flat(), **settings, **fit)})
    return arrays["x"]


def scores_of(cfg: DictConfig, data: Mnist, pool: np.ndarray, cache: Cache, kind: str) -> np.ndarray:
    """The selector's per-image scores of the pool (el2n, forgetting), from trainings on the pool
    only, cached: every run with the same pool, score settings and seed shares them (the run's
    seed unless `selector.score.seed` fixes one)."""
    settings = OmegaConf.to_container(cfg.selector.score, resolve=True)
    settings = ScoreSettings(**{**settings, "seed": fit_seed(settings["seed"], cfg.seed)})
    key = {"data": data.fingerprint, "kind": kind, "rows": array_digest(pool), **settings.__dict__}

    def trained(x: torch.Tensor, y: torch.Tensor) -> list:
        """The score trainings every score but forgetting is read from, cached once for all."""
        parts = {k: v for k, v in key.items() if k != "kind"}
        return models_from_arrays(
            cache.get("score-models", parts, lambda: models_to_arrays(fit_models(x, y, settings)))
        )

    def compute() -> Arrays:
        s = pool_scores(
            kind, data.train_images, data.train_labels, pool, settings, cfg.data.mean, cfg.data.std, trained
        )
        return {"scores": s}

    return cache.get("scores", key, compute)["scores"]


def cached_kmeans(cache: Cache, max_iter: int, tol: float, x: np.ndarray, n: int, seed: int) -> KMeansFit:
    """k-means keyed by the points themselves: nearest, furthest and cluster_random share fits."""
    parts = {"x": array_digest(x), "clusters": n, "seed": seed, "max_iter": max_iter, "tol": tol}
    parts["algorithm"] = KMEANS_VERSION

    def fit() -> Arrays:
        f = kmeans(x, n, seed, max_iter=max_iter, tol=tol)
        return {"centroids": f.centroids, "assignments": f.assignments, "distances": f.distances}

    a = cache.get("kmeans", parts, fit)
    inertia = float(np.sum(a["distances"].astype(np.float64) ** 2))
    return KMeansFit(a["centroids"], a["assignments"], a["distances"], inertia)


def cached_knn(cache: Cache, x: np.ndarray, neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """The kNN graph keyed by the points themselves: facility location and ProbCover on the same
    embedding share it, and a warm run reads it instead of n^2 distances."""
    parts = {"x": array_digest(x), "neighbors": neighbors, "algorithm": KNN_VERSION}
    a = cache.get("knn", parts, lambda: dict(zip(("idx", "dist"), knn_graph(x, neighbors), strict=True)))
    return a["idx"], a["dist"]


def recipe_of(cfg: DictConfig) -> Recipe:
    t = OmegaConf.to_container(cfg.train, resolve=True)
    values = {f: t[f] for f in Recipe.__dataclass_fields__}
    values.update(
        lr_decay_epochs=tuple(values["lr_decay_epochs"]),
        dsa=DsaParams(**values["dsa"]),
        dc_aug=DcAugParams(**values["dc_aug"]),
    )
    return Recipe(**values)


def search_split(cfg: DictConfig, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool, holdout): a search's held-out split, carved out of the selection pool before
    anything else sees it (in random order, so its first `eval_size` rows are a random sample);
    the whole pool and no holdout for every other selector."""
    if cfg.selector.name != "search":
        return pool, np.empty(0, dtype=np.int64)
    s = cfg.selector.search
    perm = np.random.default_rng(fit_seed(s.holdout_seed, cfg.seed)).permutation(len(pool))
    return np.sort(pool[perm[s.holdout :]]), pool[perm[: s.holdout]]


SEARCH_VERSION = 1  # bump when the search's rule changes: cached searches are then redone


def screen_of(cfg: DictConfig, data: Mnist, pool: np.ndarray, holdout: np.ndarray) -> Screen | None:
    """The search's screen (`selector.search.screen`), scored on the holdout's first `eval_size`
    images (the proxy's, unless the screen sets its own): on the PCA of the pool's pixels with the
    holdout projected on the same components (rbf, nn), or on LeNet-5's NTK at init (ntk); None
    for `none`."""
    c = cfg.selector.search.screen
    if c.name == "none":
        return None
    scored = holdout[: cfg.selector.search.proxy.eval_size if c.eval_size is None else c.eval_size]
    labels = data.train_labels.numpy()
    if c.name == "ntk":
        images = normalize(data.train_images, cfg.data.mean, cfg.data.std)
        inits = proxy_seeds(cfg.seed, c.inits)
        pick = partial(_pool_images, images, pool)
        return ntk_screen(LeNet5, pick, labels[pool], images[scored], labels[scored], inits, c.ridge)
    flat = data.train_flat()
    x_pool, x_hold = pca_with(flat[pool], flat[scored], c.pca_dims)
    if c.name == "rbf":
        return rbf_screen(x_pool, labels[pool], x_hold, labels[scored], c.ridge)
    return nn_screen(x_pool, labels[pool], x_hold, labels[scored])


def _pool_images(images: torch.Tensor, pool: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    return images[torch.as_tensor(pool[rows], dtype=torch.long)]


def portfolio_of(
    cfg: DictConfig, data: Mnist, pool: np.ndarray, cache: Cache, options: Options
) -> tuple[BaseRule, ...]:
    """The search's portfolio (`selector.search.bases`): each "rule" or "rule@embedding" as a
    base rule on the pool's rows, with its own embedding (fitted and cached as a run of that
    embedding would) and, for a scored rule, its own scores."""
    labels = data.train_labels.numpy()[pool]
    rules = []
    for spec in cfg.selector.search.bases:
        rule, _, name = str(spec).partition("@")
        free = rule in EMBEDDING_FREE
        x = (
            None
            if free
            else embedding_of(embedding_config(cfg, name) if name else cfg, data, pool, cache)[pool]
        )
        scores = scores_of(cfg, data, pool, cache, rule) if rule in SCORED_SELECTORS else None
        rules.append(partial(_base_rule, rule, x, labels, scores, replace(options, scores=None, search=None)))
    return tuple(rules)


def _base_rule(
    rule: str,
    x: np.ndarray | None,
    labels: np.ndarray,
    scores: np.ndarray | None,
    options: Options,
    rows: np.ndarray,
    n: int,
    seed: int,
) -> np.ndarray:
    """n of the pool's `rows`, chosen by `rule` among them."""
    xs = np.empty((len(rows), 0), np.float32) if x is None else x[rows]
    opts = options if scores is None else replace(options, scores=scores[rows])
    return rows[select(rule, xs, labels[rows], n, seed, opts)]


def search_options(
    cfg: DictConfig,
    data: Mnist,
    pool: np.ndarray,
    holdout: np.ndarray,
    path: list,
    device: torch.device,
    counts: dict[str, list[float]],
    bases: tuple[BaseRule, ...] = (),
) -> SearchOptions:
    """The search's settings, its proxy, screen and shortlist's second proxy, built here (the
    selector knows no training loop): short trainings on the pool rows of a candidate, scored on
    the holdout; each screen and shortlist evaluation's seconds go to `counts`."""
    s = cfg.selector.search
    p = OmegaConf.to_container(s.proxy, resolve=True)
    settings = ProxySettings(**{**p, "models": tuple(p["models"])})
    seeds = proxy_seeds(cfg.seed, settings.seeds + (s.shortlist_seeds if s.shortlist else 0))

    def proxy_with(trainings: list[int]) -> Proxy:
        return make_proxy(
            data.train_images,
            data.train_labels,
            pool,
            holdout,
            recipe_of(cfg),
            settings,
            trainings,
            cfg.data.mean,
            cfg.data.std,
            device,
            [partial(build_model, name) for name in settings.models],
        )

    screen = screen_of(cfg, data, pool, holdout)
    return SearchOptions(
        proxy=proxy_with(seeds[: settings.seeds]),
        draws=s.draws,
        evaluations=s.evaluations,
        candidates=s.candidates,
        width=s.width,
        trace=lambda n, score, kept: path.append((n, score, float(kept))),
        screen=None if screen is None else _timed(screen, counts.setdefault("screen", [])),
        screen_draws=s.screen.draws,
        screen_swaps=s.screen.swaps,
        screen_greedy=s.screen.greedy,
        bases=bases,
        shortlist=s.shortlist,
        rescore=_timed(proxy_with(seeds[settings.seeds :]), counts.setdefault("shortlist", []))
        if s.shortlist
        else None,
        rescore_weight=s.shortlist_seeds / (settings.seeds + s.shortlist_seeds),
    )


def _timed(score: Proxy, seconds: list[float]) -> Proxy:
    """`score`, each call's seconds appended to `seconds` (the run's screen_* and shortlist_* metrics)."""

    def timed(rows: np.ndarray) -> float:
        start = time.perf_counter()
        value = score(rows)
        seconds.append(time.perf_counter() - start)
        return value

    return timed


def subset_of(
    cfg: DictConfig,
    data: Mnist,
    pool: np.ndarray,
    cache: Cache,
    holdout: np.ndarray | None = None,
    device: torch.device | None = None,
    found: dict | None = None,
) -> np.ndarray:
    """The kept indices into the training set: embedding or scores of the pool, then the selector;
    everything random behind them follows `cfg.seed` (unless the config fixes a fit's seed). A
    search also gets its proxy on `holdout` and puts its `path` (rows of evaluation, score, kept)
    and `seconds` into `found`; a finished search is cached by everything it depends on."""
    labels = data.train_labels.numpy()
    sel = cfg.selector
    rule = sel.base if sel.name == "search" else sel.name  # what ranks images: a search's base
    kind = {"uncertainty": sel.get("measure"), "ccs": sel.get("difficulty")}.get(rule) or rule
    # a selector that ignores the embedding is given none: a random run trains no autoencoder
    free = sel.name in EMBEDDING_FREE
    x = np.empty((len(labels), 0), np.float32) if free else embedding_of(cfg, data, pool, cache)
    options = Options(
        clusters=sel.get("clusters"),
        balance=sel.balance,
        neighbors=sel.neighbors,
        easy_fraction=sel.easy_fraction,
        keep=sel.keep,
        scores=scores_of(cfg, data, pool, cache, kind) if rule in SCORED_SELECTORS else None,
        kmeans=partial(cached_kmeans, cache, cfg.kmeans.max_iter, cfg.kmeans.tol),
        knn=partial(cached_knn, cache),
        # a selector's own settings (ccs, probcover, search): from its schema, none invented here
        **{f: sel[f] for f in ("prune_hard", "strata", "delta", "purity", "base") if f in sel},
    )
    if sel.name == "fixed":  # a subset chosen elsewhere, as rows of the pool
        options = replace(options, given=np.searchsorted(pool, given_indices(cfg)))
    if sel.name != "search":
        return pool[select(sel.name, x[pool], labels[pool], cfg.k, cfg.seed, options)]

    path: list[tuple[int, float, float]] = []
    counts: dict[str, list[float]] = {}
    device = device or torch.device("cpu")
    holdout = np.empty(0, dtype=np.int64) if holdout is None else holdout

    def run_search() -> Arrays:
        start = time.perf_counter()
        bases = portfolio_of(cfg, data, pool, cache, options)
        search = search_options(cfg, data, pool, holdout, path, device, counts, bases)
        picked = select(sel.name, x[pool], labels[pool], cfg.k, cfg.seed, replace(options, search=search))
        seconds = np.array([time.perf_counter() - start])
        screen, shortlist = counts.get("screen", []), counts.get("shortlist", [])
        return {
            "indices": pool[picked],
            "path": np.asarray(path, float).reshape(-1, 3),
            "seconds": seconds,
            "screen": np.array([len(screen), sum(screen)]),  # evaluations, seconds
            "shortlist": np.array([len(shortlist), sum(shortlist)]),
        }

    key = {
        "data": data.fingerprint,
        "pool": array_digest(pool),
        "holdout": array_digest(holdout),
        "x": array_digest(x[pool]),
        "scores": None if options.scores is None else array_digest(options.scores),
        "k": cfg.k,
        "seed": cfg.seed,
        "selector": OmegaConf.to_container(sel, resolve=True),
        "recipe": recipe_of(cfg).__dict__,
        "version": SEARCH_VERSION,
    }
    done = cache.get("search", key, run_search)
    if found is not None:
        found.update(path=done["path"], seconds=float(done["seconds"][0]))
        if cfg.selector.search.screen.name != "none":
            found.update(screen_evaluations=int(done["screen"][0]), screen_seconds=float(done["screen"][1]))
        if cfg.selector.search.shortlist:
            found.update(
                shortlist_evaluations=int(done["shortlist"][0]), shortlist_seconds=float(done["shortlist"][1])
            )
    return done["indices"]
