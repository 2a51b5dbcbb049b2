"""The typed schema of the config in `conf/`: one dataclass per group or section, registered in
Hydra's ConfigStore (`mnist_pruning.config.register_configs`) so that a misspelt key or a value
of the wrong type fails when the config is composed, before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mnist_pruning.dsa import DcAugParams, DsaParams


@dataclass
class DataConfig:
    root: str = "${oc.env:MNIST_DATA_DIR,data}"
    download: bool = True
    verify: bool = True
    # images held out of the selection pool to tune the recipe on, never the test set
    validation_size: int = 0
    validation_seed: int = 0
    # the usual MNIST normalisation; fixed so that it does not depend on the subset
    mean: float = 0.1307
    std: float = 0.3081


@dataclass
class EmbeddingConfig:
    name: str = MISSING
    dims: int | None = None
    # autoencoder / classifier training (ignored by pca and pixels)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3
    momentum: float = 0.9  # classifier (SGD)
    weight_decay: float = 5e-4  # classifier
    # a learned fit's seed (autoencoder, classifier); None: the run's seed, so five seeds are
    # five fits; a number fixes one fit for every run (pca and pixels have no randomness)
    seed: int | None = None


@dataclass
class ContrastiveEmbeddingConfig(EmbeddingConfig):
    """`embedding=contrastive`: SimCLR's loss on two augmented views per image (the recipe's
    affine and elastic maps), a projection head dropped after training."""

    temperature: float = 0.5  # NT-Xent
    projection_dims: int = 32
    aug_rotate: float = 30.0
    aug_translate: float = 0.1
    aug_scale: float = 0.2
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0


@dataclass
class ScoreConfig:
    """The short LeNet-5 trainings on the pool that score images (el2n, forgetting)."""

    epochs: int = 4
    inits: int = 4
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int | None = None  # None: the run's seed (five seeds, five sets of scores)


@dataclass
class SelectorConfig:
    name: str = MISSING
    clusters: int | None = None
    balance: bool = False
    neighbors: int = 20  # typical: typicality neighbours; facility_location: similarity graph
    easy_fraction: float = 0.5  # hybrid: share of each cluster taken nearest its centroid
    keep: str = "easy"  # el2n, forgetting: easy (lowest scores) or hard (highest)
    score: ScoreConfig = field(default_factory=ScoreConfig)


@dataclass
class FixedSelectorConfig(SelectorConfig):
    """`selector=fixed`: a subset chosen elsewhere, exactly one of a file or a run."""

    indices: str | None = None  # a .npy or text file of indices into the 60,000 training images
    run: str | None = None  # an MLflow run (of mlflow.tracking_uri) whose selected_indices.npy it trains


@dataclass
class UncertaintySelectorConfig(SelectorConfig):
    """`selector=uncertainty`: which of DeepCore's uncertainty scores ranks the images."""

    measure: str = "least_confidence"  # least_confidence, margin or entropy


@dataclass
class CcsSelectorConfig(SelectorConfig):
    """`selector=ccs` (Zheng et al. 2023): prune the hardest fraction by a difficulty score, then
    sample evenly across strata of the score."""

    difficulty: str = "forgetting"  # the score: forgetting, el2n, grand, or an uncertainty measure
    prune_hard: float = 0.1  # beta: the hardest fraction dropped before sampling
    strata: int = 50  # equal-width bins of the remaining scores


@dataclass
class ProbcoverSelectorConfig(SelectorConfig):
    """`selector=probcover` (Yehuda et al. 2022): greedy maximum coverage of delta-balls."""

    delta: float | None = None  # ball radius; None: the largest whose balls are `purity` pure
    purity: float = 0.95  # share of balls whose members share one k-means pseudo-label


@dataclass
class ProxyConfig:
    """The short LeNet-5 trainings that score a candidate subset for `search`, on the search's
    held-out split: the same training seeds for every candidate (common random numbers)."""

    steps: int = 1000  # chosen by bench.py's proxy fidelity (README, Performance)
    batch_size: int = 64
    seeds: int = 2  # trainings per candidate, their seeds drawn from the run's seed
    eval_size: int = 5000  # held-out images each candidate is scored on
    augment: bool = True  # the run's regime's augmentation (False: plain images)
    # the proxy's own recipe: null takes the run's regime's value, so that at these defaults the
    # proxy is the run's recipe cut short (the first-generation search's)
    optimizer: str | None = None  # sgd or adam (AdamW)
    lr: float | None = None
    weight_decay: float | None = None
    strength: float = 1.0  # the maps' rotation, translation, scale and elastic alpha x this (light: < 1)
    elastic: bool = True  # false: affine maps only
    # the trainers a candidate's score is the mean over, the same seeds under each: networks of
    # conf/model at their defaults (lenet5, mlp, convnet3), whatever network the run trains
    models: list[str] = field(default_factory=lambda: ["lenet5"])


@dataclass
class ScreenConfig:
    """A cheap screen (mnist_pruning.screens) that ranks candidates before the proxy judges them:
    a search of many candidates at the proxy's cost of a few. At the defaults, no screen."""

    # none; rbf (kernel ridge regression) or nn (1-NN) on PCA of the pixels; ntk (KRR, LeNet-5's NTK)
    name: str = "none"
    draws: int = 0  # base subsets screened; the base's own and the best draws - 1 go to the proxy
    swaps: int = 1  # random swaps screened for each swap the proxy judges (1: none screened)
    greedy: int = 0  # > 0: one more draw built by the screen, each image the best of this many of its class
    ridge: float = 1.0e-3  # rbf: relative to the kernel's mean diagonal
    pca_dims: int = 50  # the PCA (fit on the pool) the screen sees the pool and the holdout in
    inits: int = 1  # ntk: the initialisations the kernel is averaged over
    eval_size: int | None = None  # held-out images the screen scores on; null: the proxy's eval_size


@dataclass
class SearchConfig:
    """`search`: start from the base selector's best draw, then swap one image at a time for
    another of its class, keeping a swap when the proxy's score rises."""

    holdout: int = 10000  # training images held out of the pool for the proxy, never the test set
    holdout_seed: int | None = None  # None: the run's seed
    draws: int = 8  # base subsets: the first on the whole pool, the rest on random halves of each class
    evaluations: int = 60  # proxy evaluations in all, draws included; 0: the base's subset, unscored
    candidates: str = "neighbors"  # a swap brings in a neighbour of the image replaced, or "ranked"
    width: int = 20  # neighbours of an image, or extra images per class ranked by the base
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    # a portfolio: more base rules the draws alternate with selector.base, "rule" (on the run's
    # embedding) or "rule@embedding" (conf/embedding); [] : selector.base alone
    bases: list[str] = field(default_factory=list)
    shortlist: int = 0  # the best M subsets the proxy judged, scored again with shortlist_seeds new seeds
    shortlist_seeds: int = 2


@dataclass
class SearchSelectorConfig(SelectorConfig):
    """`selector=search`: the selector's other settings (clusters, neighbors, keep, score) are
    its base's. A schema of its own, so that no other selector's runs carry these keys."""

    base: str = "herding"
    search: SearchConfig = field(default_factory=SearchConfig)


@dataclass
class ModelConfig:
    """The network a run trains (conf/model): lenet5, the study's, has no options."""

    name: str = MISSING


@dataclass
class ConvNetConfig(ModelConfig):
    """`model=convnet3`: the condensation benchmark's ConvNet (width 128, depth 3 there)."""

    width: int = 128
    depth: int = 3


@dataclass
class MlpConfig(ModelConfig):
    """`model=mlp`: fully connected layers of these widths between the pixels and the classes."""

    hidden: list[int] = field(default_factory=lambda: [128])


@dataclass
class KMeansConfig:
    max_iter: int = 100
    tol: float = 1e-4


@dataclass
class RegimeConfig:
    """The recipe settings that depend on the size of the training subset (conf/train)."""

    steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    augment: bool = MISSING
    aug_rotate: float = MISSING
    aug_translate: float = MISSING
    aug_scale: float = MISSING
    elastic_alpha: float = MISSING
    elastic_sigma: float = MISSING
    label_smoothing: float = MISSING


@dataclass
class TrainConfig:
    # the regime of a run: the smallest `regime_bounds` entry >= its training-set size
    regime: str = "${size_regime:${selector.name},${k},${data.validation_size},${train.regime_bounds}}"
    regime_bounds: dict[str, int] = field(default_factory=dict)
    regimes: dict[str, RegimeConfig] = field(default_factory=dict)
    steps: int = "${train.regimes.${train.regime}.steps}"  # type: ignore[assignment]
    batch_size: int = "${train.regimes.${train.regime}.batch_size}"  # type: ignore[assignment]
    lr: float = "${train.regimes.${train.regime}.lr}"  # type: ignore[assignment]
    momentum: float = 0.9
    weight_decay: float = "${train.regimes.${train.regime}.weight_decay}"  # type: ignore[assignment]
    warmup_steps: int = 100
    augment: bool = "${train.regimes.${train.regime}.augment}"  # type: ignore[assignment]
    aug_rotate: float = "${train.regimes.${train.regime}.aug_rotate}"  # type: ignore[assignment]
    aug_translate: float = "${train.regimes.${train.regime}.aug_translate}"  # type: ignore[assignment]
    aug_scale: float = "${train.regimes.${train.regime}.aug_scale}"  # type: ignore[assignment]
    elastic_alpha: float = "${train.regimes.${train.regime}.elastic_alpha}"  # type: ignore[assignment]
    elastic_sigma: float = "${train.regimes.${train.regime}.elastic_sigma}"  # type: ignore[assignment]
    label_smoothing: float = "${train.regimes.${train.regime}.label_smoothing}"  # type: ignore[assignment]
    eval_every: int = 0
    eval_batch_size: int = 2000
    log_every: int = 500
    # an epoch schedule and the condensation benchmark's protocol (conf/train/dc_protocol.yaml);
    # at these defaults a run is what it was before they existed (tracking.LATER_KEYS)
    epochs: int | None = None  # set: passes over the subset (steps then follow from it)
    nesterov: bool = True
    schedule: str = "warmup_cosine"  # or step: lr x lr_decay from each of lr_decay_epochs on
    lr_decay_epochs: list[int] = field(default_factory=list)
    lr_decay: float = 0.1
    reset_momentum: bool = False  # at each decay (the benchmark's code makes a new optimizer)
    augmentation: str = "maps"  # the regime's affine + elastic maps, or the benchmark's dsa, or dc
    optimizer: str = "sgd"  # SGD with momentum (nesterov above); adam: AdamW (a search's proxy may use it)
    dsa: DsaParams = field(default_factory=DsaParams)
    dc_aug: DcAugParams = field(default_factory=DcAugParams)  # augmentation=dc: the DC paper's


@dataclass
class CacheConfig:
    dir: str = "${oc.env:MNIST_PRUNING_CACHE,.cache}"
    enabled: bool = True


@dataclass
class MlflowConfig:
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}"
    experiment_name: str = "mnist-pruning"
    artifact_root: str = "mlruns"
    run_label: str | None = None  # appended to run names (tells apart runs the name leaves alike)


@dataclass
class SearchDim:
    """One knob of a tuning study: a number in [low, high] (on a log scale with `log`, in steps
    of `step`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


@dataclass
class TuneConfig:
    trials: int = 20
    seeds: int = 3  # runs per trial; a trial scores the median of their val_acc
    sampler_seed: int = 0
    startup_trials: int = 10  # TPE's random start-up trials (Optuna's n_startup_trials)
    # trial 0 runs the settings the size's regime has now, so the best is measured against them
    enqueue_regime: bool = False
    # section -> key -> range, e.g. space.train.lr: a study tunes every key of it, or `keys`
    space: dict[str, dict[str, SearchDim]] = field(default_factory=dict)
    only: list[str] | None = None  # tune just these keys of the space


@dataclass
class Config:
    defaults: list[Any] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    k: int = 1000
    pca_dims: int | None = 50
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: bool = False  # skip a setting + seed that already has a FINISHED run
    tune: TuneConfig | None = None  # only in `python -m mnist_pruning.tune` (conf/tune.yaml)


@dataclass
class ReportConfig:
    defaults: list[Any] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    metric: str = "test_acc"  # test_acc, or val_acc for tuning runs (a validation split)
    target_acc: float = 0.95
    near_full: float | None = 0.003  # also the smallest k within this of full data's median
    reference: str | None = None  # a CSV of another study's medians to set beside these
    out_dir: str = "reports"
    montage_k: int | None = None  # k of the selected_examples.png rows; None: the smallest k run
    min_seeds: int = 5  # groups with fewer seeds are flagged
    results_file: str | None = None  # a markdown file whose report:<out_dir name> block gets the tables
    sweep: str | None = None  # only the runs of this sweep (its directory or parent run id)
    archive: list[str] = field(default_factory=list)  # runs.csv files whose runs the store lacks
    subsets: bool = False  # also write each distinct subset trained as out_dir/subsets/<digest>.txt
    latest_regime: bool = False  # a setting run at one k under several regimes: its newest regime only
    paired: str | None = None  # a run label (control): every other setting against it, seed by seed
