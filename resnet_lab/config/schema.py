"""Typed schemas of every config group option.

Each YAML option in conf/ names its schema first in its defaults list, so Hydra rejects unknown
keys and wrong types while composing; `validate` then checks ranges and cross-key rules on the
composed config, before anything is built. Both kinds of failure surface as one line (cli.py).

The schemas state types and rules, never values: every default lives in the YAML option a user
reads (conf/<group>/<option>.yaml), so a field here is MISSING and the option must set it
(tests/test_defaults.py holds both to that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any, List, Literal, Optional, Union, get_args

from hydra.core.config_store import ConfigStore
from hydra.utils import to_absolute_path
from omegaconf import MISSING, DictConfig, OmegaConf

from resnet_lab.config.plain import plain_dict
from resnet_lab.errors import ConfigError


class HeadPool(str, Enum):
    avg = "avg"
    max = "max"


class GallerySelect(str, Enum):
    """Which misclassified images the GradCAM gallery shows."""

    per_class = "per_class"  # the most confident mistakes of each true class in turn
    confident = "confident"  # the most confident mistakes overall
    random = "random"  # a seeded random sample of the mistakes
    first = "first"  # the first mistakes in evaluation order


class DataFormat(str, Enum):
    cifar10 = "cifar10"
    image_folder = "image_folder"


class PadMode(str, Enum):
    reflect = "reflect"
    replicate = "replicate"
    zeros = "zeros"


class AnnealStrategy(str, Enum):
    cos = "cos"
    linear = "linear"


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


class Strategy(str, Enum):
    single = "single"
    ddp = "ddp"


class CompileMode(str, Enum):
    """torch.compile modes; the names are what a config writes (reduce_overhead = CUDA graphs)."""

    auto = "auto"
    off = "off"
    default = "default"
    reduce_overhead = "reduce-overhead"
    max_autotune = "max-autotune"
    max_autotune_no_cudagraphs = "max-autotune-no-cudagraphs"


class TTAMode(str, Enum):
    """Test-time augmentation of the final evaluation."""

    none = "none"
    flip = "flip"
    flip_translate = "flip_translate"


class OptimizerImplementation(str, Enum):
    auto = "auto"
    fused = "fused"
    foreach = "foreach"
    for_loop = "for_loop"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Raise `ConfigError("key=value: allowed")` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _probability(key: str, value: float) -> None:
    require(0.0 <= value <= 1.0, key, value, "a probability in [0, 1]")


def _positive(key: str, value: float) -> None:
    require(value > 0, key, value, "a number > 0")


def _low_high(key: str, values: list[float], allowed: str) -> None:
    """A [low, high] range of positive values (a search window, or bounds)."""
    pair = list(values)
    require(len(pair) == 2 and 0 < pair[0] < pair[1], key, pair, allowed)


def _non_negative(key: str, value: float) -> None:
    require(value >= 0, key, value, "a number >= 0")


@dataclass
class ModelConfig:
    """What every model option has: the experiments set logit_scale and bn_momentum on any model."""

    _target_: str = MISSING
    num_classes: Optional[int] = MISSING
    logit_scale: Optional[float] = MISSING
    bn_momentum: float = MISSING

    def check(self, key: str) -> None:
        require(0.0 < self.bn_momentum <= 1.0, f"{key}.bn_momentum", self.bn_momentum, "a value in (0, 1]")
        if self.num_classes is not None:
            require(self.num_classes >= 2, f"{key}.num_classes", self.num_classes, "null (from the data) or an integer >= 2")
        if self.logit_scale is not None:
            _positive(f"{key}.logit_scale", self.logit_scale)


@dataclass
class CustomResNetConfig(ModelConfig):
    width_multiplier: float = MISSING
    dropout: float = MISSING
    head_pool: HeadPool = MISSING
    bn_scale_trainable: bool = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        # 16x the base widths is already a 1.7-billion-parameter net; beyond that is a typo.
        require(0 < self.width_multiplier <= 16, f"{key}.width_multiplier", self.width_multiplier, "a number in (0, 16]")
        require(0.0 <= self.dropout < 1.0, f"{key}.dropout", self.dropout, "a value in [0, 1)")


@dataclass
class ResNet18Config(ModelConfig):
    zero_init_residual: bool = MISSING


@dataclass
class DataConfig:
    format: DataFormat = MISSING
    root: str = MISSING
    image_size: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    drop_last: bool = MISSING
    train_subset: Optional[int] = MISSING
    test_subset: Optional[int] = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    mean: List[float] = MISSING
    std: List[float] = MISSING
    cache_dir: Optional[str] = MISSING

    def check(self, key: str) -> None:
        own = isinstance(self, Cifar10DataConfig) == (self.format == DataFormat.cifar10)
        require(own, f"{key}.format", DataFormat(self.format).name, "the format of the data option itself (choose it with data=cifar10 or data=image_folder)")
        require(8 <= self.image_size <= 512, f"{key}.image_size", self.image_size, "an integer in [8, 512]")
        require(self.batch_size >= 1, f"{key}.batch_size", self.batch_size, "an integer >= 1")
        require(self.eval_batch_size >= 1, f"{key}.eval_batch_size", self.eval_batch_size, "an integer >= 1")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None:
                require(value >= 1, f"{key}.{name}", value, "null (all images) or an integer >= 1")
        require(0.0 <= self.val_fraction < 1.0, f"{key}.val_fraction", self.val_fraction, "a fraction in [0, 1); 0 evaluates on the test set")
        require(len(self.mean) == 3, f"{key}.mean", self.mean, "three per-channel values")
        require(len(self.std) == 3 and all(s > 0 for s in self.std), f"{key}.std", self.std, "three per-channel values > 0")


@dataclass
class Cifar10DataConfig(DataConfig):
    download: bool = MISSING


@dataclass
class AugmentationConfig:
    crop_padding: int = MISSING
    padding_mode: PadMode = MISSING
    flip_p: float = MISSING
    cutout_size: int = MISSING
    cutout_p: float = MISSING
    alternate_flip: bool = MISSING

    def check(self, key: str) -> None:
        if self.alternate_flip:
            require(self.flip_p == 0.5, f"{key}.flip_p", self.flip_p, "0.5 with alternate_flip=true (half the images are flipped each epoch)")
        _non_negative(f"{key}.crop_padding", self.crop_padding)
        _non_negative(f"{key}.cutout_size", self.cutout_size)
        _probability(f"{key}.flip_p", self.flip_p)
        _probability(f"{key}.cutout_p", self.cutout_p)


LR_WINDOW_ALLOWED = "[low, high] multiples of the LR-finder suggestion, 0 < low < high (max_lr in [suggestion x low, suggestion x high])"


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    weight_decay: float = MISSING
    weight_decay_window: List[float] = MISSING
    lr_window: List[float] = MISSING
    decay_norm_and_bias: bool = MISSING
    implementation: OptimizerImplementation = MISSING
    norm_bias_lr_scale: float = MISSING

    def check(self, key: str) -> None:
        _non_negative(f"{key}.weight_decay", self.weight_decay)
        _low_high(f"{key}.weight_decay_window", self.weight_decay_window, "[low, high] with 0 < low < high")
        _low_high(f"{key}.lr_window", self.lr_window, LR_WINDOW_ALLOWED)
        _positive(f"{key}.norm_bias_lr_scale", self.norm_bias_lr_scale)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING
    decoupled: bool = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        require(0.0 <= self.momentum < 1.0, f"{key}.momentum", self.momentum, "a value in [0, 1)")
        if self.nesterov:
            require(self.momentum > 0, f"{key}.nesterov", self.nesterov, "false when momentum is 0")


@dataclass
class AdamConfig(OptimizerConfig):
    betas: List[float] = MISSING
    eps: float = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), f"{key}.betas", self.betas, "two values in [0, 1)")
        _positive(f"{key}.eps", self.eps)


AUTO = "auto"


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    max_lr: Union[float, int, str] = MISSING

    def check(self, key: str) -> None:
        if isinstance(self.max_lr, str):
            require(self.max_lr == AUTO, f"{key}.max_lr", self.max_lr, "a number > 0 or 'auto' (take it from an LR range test)")
        else:
            _positive(f"{key}.max_lr", self.max_lr)


@dataclass
class OneCycleConfig(SchedulerConfig):
    pct_start: float = MISSING
    div_factor: float = MISSING
    final_div_factor: float = MISSING
    anneal_strategy: AnnealStrategy = MISSING
    three_phase: bool = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        require(0.0 < self.pct_start < 1.0, f"{key}.pct_start", self.pct_start, "a fraction in (0, 1)")
        _positive(f"{key}.div_factor", self.div_factor)
        _positive(f"{key}.final_div_factor", self.final_div_factor)


@dataclass
class CosineConfig(SchedulerConfig):
    warmup_epochs: float = MISSING
    min_lr: float = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        _non_negative(f"{key}.warmup_epochs", self.warmup_epochs)
        _non_negative(f"{key}.min_lr", self.min_lr)


@dataclass
class StepConfig(SchedulerConfig):
    step_epochs: int = MISSING
    gamma: float = MISSING

    def check(self, key: str) -> None:
        super().check(key)
        require(self.step_epochs >= 1, f"{key}.step_epochs", self.step_epochs, "an integer >= 1")
        require(0.0 < self.gamma <= 1.0, f"{key}.gamma", self.gamma, "a factor in (0, 1]")


@dataclass
class ConstantConfig(SchedulerConfig):
    """max_lr throughout."""


MAX_EPOCHS = 10_000  # far beyond any CIFAR-sized recipe: a larger number is a typo


@dataclass
class TrainerConfig:
    device: Device = MISSING
    epochs: int = MISSING
    precision: Precision = MISSING
    channels_last: bool = MISSING
    label_smoothing: float = MISSING
    grad_clip: Optional[float] = MISSING
    seed: int = MISSING
    deterministic: bool = MISSING
    resume: bool = MISSING
    overwrite: bool = MISSING
    resume_fallback_best: bool = MISSING
    progress: bool = MISSING
    strategy: Strategy = MISSING
    compile: CompileMode = MISSING
    tta: TTAMode = MISSING
    eval_every: int = MISSING
    ema_decay: Optional[float] = MISSING
    ema_every: int = MISSING
    ema_lookahead: bool = MISSING

    def check(self, key: str) -> None:
        if self.ema_lookahead:
            require(
                self.ema_decay is not None, f"{key}.ema_lookahead", self.ema_lookahead, "false while ema_decay is null (Lookahead needs the average's decay)"
            )
        if self.ema_decay is not None:
            require(0.0 < self.ema_decay < 1.0, f"{key}.ema_decay", self.ema_decay, "null (off) or a value in (0, 1)")
        require(self.ema_every >= 1, f"{key}.ema_every", self.ema_every, "an integer >= 1")
        require(1 <= self.epochs <= MAX_EPOCHS, f"{key}.epochs", self.epochs, f"an integer >= 1 and <= {MAX_EPOCHS}")
        require(self.eval_every >= 0, f"{key}.eval_every", self.eval_every, "an integer >= 0 (0: only after the last epoch)")
        require(0.0 <= self.label_smoothing < 1.0, f"{key}.label_smoothing", self.label_smoothing, "a value in [0, 1)")
        if self.grad_clip is not None:
            _positive(f"{key}.grad_clip", self.grad_clip)
        require(self.seed >= 0, f"{key}.seed", self.seed, "an integer >= 0")
        if self.overwrite:
            require(
                not self.resume, f"{key}.overwrite", self.overwrite, "false with trainer.resume=true (resume continues the run that overwrite would replace)"
            )


class StepMode(str, Enum):
    exp = "exp"
    linear = "linear"


class Suggestion(str, Enum):
    valley = "valley"
    steepest = "steepest"


@dataclass
class LRFinderConfig:
    start_lr: float = MISSING
    end_lr: float = MISSING
    num_iter: int = MISSING
    step_mode: StepMode = MISSING
    smoothing: float = MISSING
    diverge_threshold: float = MISSING
    use_val_loss: bool = MISSING
    skip_start: int = MISSING
    skip_end: int = MISSING
    suggestion: Suggestion = MISSING
    file: Optional[str] = MISSING

    def check(self, key: str) -> None:
        _positive(f"{key}.start_lr", self.start_lr)
        require(self.end_lr > self.start_lr, f"{key}.end_lr", self.end_lr, f"a value > start_lr={self.start_lr}")
        require(self.num_iter >= 10, f"{key}.num_iter", self.num_iter, "an integer >= 10")
        require(0.0 <= self.smoothing < 1.0, f"{key}.smoothing", self.smoothing, "a value in [0, 1)")
        require(self.diverge_threshold > 1.0, f"{key}.diverge_threshold", self.diverge_threshold, "a factor > 1")
        _non_negative(f"{key}.skip_start", self.skip_start)
        _non_negative(f"{key}.skip_end", self.skip_end)
        require(self.skip_start + self.skip_end + 3 <= self.num_iter, f"{key}.num_iter", self.num_iter, "more than skip_start + skip_end + 2")


class PrunerKind(str, Enum):
    """How an Optuna sweep stops hopeless trials early (from their evaluated epochs)."""

    none = "none"
    median = "median"
    percentile = "percentile"
    successive_halving = "successive_halving"
    hyperband = "hyperband"
    schedule_halving = "schedule_halving"  # multi-fidelity: trials judged at the end of complete, shorter schedules (sweep/schedule_halving.py)
    margin = "margin"  # judged at equal epochs after the LR's peak, allowed the lag the near-best trials had there (trial.py)
    peak_halving = "peak_halving"  # successive halving from the epoch the LR peaks at, one rung per epoch (trial.py)


@dataclass
class PrunerConfig:
    kind: PrunerKind = MISSING
    startup_trials: int = MISSING
    warmup_epochs: int = MISSING
    percentile: float = MISSING
    min_epochs: int = MISSING
    reduction_factor: int = MISSING
    keep_one_in: List[int] = MISSING

    def check(self, key: str) -> None:
        require(self.startup_trials >= 0, f"{key}.startup_trials", self.startup_trials, "an integer >= 0")
        require(self.warmup_epochs >= 0, f"{key}.warmup_epochs", self.warmup_epochs, "an integer >= 0")
        require(0 < self.percentile < 100, f"{key}.percentile", self.percentile, "a number between 0 and 100 (exclusive)")
        require(self.min_epochs >= 1, f"{key}.min_epochs", self.min_epochs, "an integer >= 1")
        require(self.reduction_factor >= 2, f"{key}.reduction_factor", self.reduction_factor, "an integer >= 2")
        rungs = list(self.keep_one_in)
        allowed = "a list of one or more integers >= 2 (1 in N trials goes on at each rung)"
        require(len(rungs) >= 1 and all(n >= 2 for n in rungs), f"{key}.keep_one_in", rungs, allowed)


class Objective(str, Enum):
    """What an Optuna sweep optimises; with two, a Pareto front. Each has one sensible direction."""

    accuracy = "accuracy"  # the final evaluation accuracy (with TTA when on): maximise
    train_time = "train_time"  # steady-state training seconds: epochs x the median epoch after the first (summary.json steady_train_time_s): minimise
    epochs = "epochs"  # epochs trained (fewer, for a pruned-or-short recipe): minimise
    examples = "examples"  # training images seen, epochs x images (summary.json train_examples), exactly the same for the same recipe: minimise

    @property
    def direction(self) -> str:
        return "maximize" if self is Objective.accuracy else "minimize"


@dataclass
class HParamsSearchConfig:
    max_lr_bounds: Optional[List[float]] = MISSING
    lr_finder_json: Optional[str] = MISSING
    lr_window: Optional[List[float]] = MISSING
    grid_points: int = MISSING
    pruner: PrunerConfig = MISSING
    objectives: List[Objective] = MISSING
    workers: int = MISSING

    def check(self, key: str) -> None:
        require(self.grid_points >= 2, f"{key}.grid_points", self.grid_points, "an integer >= 2")
        require(self.workers >= 1, f"{key}.workers", self.workers, "an integer >= 1 (sweep processes on this machine, one trial each at a time)")
        self.pruner.check(f"{key}.pruner")
        names = [Objective(o).value for o in self.objectives]
        require(
            names[:1] == ["accuracy"] and len(names) <= 2 and len(set(names)) == len(names),
            f"{key}.objectives",
            names,
            "[accuracy] or [accuracy, train_time | epochs | examples]",
        )
        if self.max_lr_bounds is not None:
            _low_high(f"{key}.max_lr_bounds", self.max_lr_bounds, "null (from the LR range test) or [low, high] with 0 < low < high")
        if self.lr_window is not None:
            _low_high(f"{key}.lr_window", self.lr_window, f"null (the optimizer's own) or {LR_WINDOW_ALLOWED}")


class LoggerKind(str, Enum):
    wandb = "wandb"
    none = "none"


WandbMode = Literal["offline", "online", "disabled", "shared"]
WANDB_MODES: tuple[WandbMode, ...] = get_args(WandbMode)


@dataclass
class LoggerConfig:
    kind: LoggerKind = MISSING

    def check(self, key: str) -> None:
        pass


@dataclass
class WandbConfig(LoggerConfig):
    mode: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    tags: List[str] = MISSING

    def check(self, key: str) -> None:
        require(self.mode in WANDB_MODES, f"{key}.mode", self.mode, f"one of {', '.join(WANDB_MODES)}")
        require(bool(self.project), f"{key}.project", self.project, "a non-empty W&B project name")


@dataclass
class ExplainConfig:
    enabled: bool = MISSING

    def check(self, key: str) -> None:
        pass


@dataclass
class GradCAMConfig(ExplainConfig):
    n_images: int = MISSING
    select: GallerySelect = MISSING
    target_layer: Optional[str] = MISSING
    columns: int = MISSING

    def check(self, key: str) -> None:
        require(self.n_images >= 1, f"{key}.n_images", self.n_images, "an integer >= 1")
        require(self.columns >= 1, f"{key}.columns", self.columns, "an integer >= 1")


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"custom_resnet": CustomResNetConfig, "resnet18": ResNet18Config},
    "data": {"cifar10": Cifar10DataConfig, "image_folder": DataConfig},
    "augmentation": {"none": AugmentationConfig, "crop_flip": AugmentationConfig, "cutout": AugmentationConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamConfig},
    "scheduler": {"onecycle": OneCycleConfig, "cosine": CosineConfig, "step": StepConfig, "constant": ConstantConfig},
    "trainer": {"default": TrainerConfig},
    "lr_finder": {"default": LRFinderConfig},
    "logger": {"wandb": WandbConfig, "none": LoggerConfig},
    "explain": {"gradcam": GradCAMConfig, "none": ExplainConfig},
}

GROUPS = tuple(SCHEMAS)
# Groups that may be absent: hparams_search is only selected for Optuna sweeps.
OPTIONAL_SCHEMAS: dict[str, dict[str, type]] = {"hparams_search": {"optuna": HParamsSearchConfig}}


def register_schemas() -> None:
    """Store each schema as `schema/<group>/<option>`, which the YAML option extends."""
    store = ConfigStore.instance()
    for group, options in {**SCHEMAS, **OPTIONAL_SCHEMAS}.items():
        for option, schema in options.items():
            store.store(group=f"schema/{group}", name=option, node=schema)


TOP_LEVEL_KEYS = ("resume_from", "reproduced_from")


def allowed_keys(schema_name: str) -> list[str]:
    """User-settable keys of the schema class called `schema_name` (for error messages)."""
    for options in {**SCHEMAS, **OPTIONAL_SCHEMAS}.values():
        for schema in options.values():
            if schema.__name__ == schema_name:
                return [f.name for f in fields(schema) if not f.name.startswith("_")]
    return []


@dataclass(frozen=True)
class RunConfig:
    """A composed config after validation: each group as its typed schema object. Entry points
    build it once (`validate`) and hand it, or the one group a function needs, downwards;
    nothing below them reads Hydra or validates again."""

    model: ModelConfig
    data: DataConfig
    augmentation: AugmentationConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    lr_finder: LRFinderConfig
    logger: LoggerConfig
    explain: ExplainConfig
    hparams_search: Optional[HParamsSearchConfig]
    resume_from: Optional[str]
    reproduced_from: Optional[str]
    composed: DictConfig  # as Hydra composed it: what checkpoints and trackers record

    @property
    def gallery(self) -> GradCAMConfig | None:
        """The GradCAM gallery's settings, when this run draws one."""
        return self.explain if isinstance(self.explain, GradCAMConfig) and self.explain.enabled else None

    def resolved(self) -> dict[str, Any]:
        """The composed config as plain values (enums by name): for files and trackers."""
        return plain_dict(self.composed, enum_to_str=True)


def _require_finite(key: str, value: Any) -> None:
    """No setting may be NaN or infinite (scheduler.max_lr=inf would train one step and diverge)."""
    if isinstance(value, float):
        require(math.isfinite(value), key, value, "a finite number")
    elif isinstance(value, list):
        for item in value:
            _require_finite(key, item)
    elif is_dataclass(value):
        for field in fields(value):
            _require_finite(f"{key}.{field.name}", getattr(value, field.name))


def validate(cfg: DictConfig) -> RunConfig:
    """Check every group's ranges and cross-key rules; returns the typed config."""
    known = GROUPS + tuple(OPTIONAL_SCHEMAS) + TOP_LEVEL_KEYS
    unknown = sorted(set(cfg) - set(known) - {"hydra"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
    typed: dict[str, Any] = {}
    for group in GROUPS + tuple(g for g in OPTIONAL_SCHEMAS if g in cfg):
        if group not in cfg:
            raise ConfigError(f"config group '{group}' is missing; allowed options: {', '.join(SCHEMAS[group])}")
        node: Any = OmegaConf.to_object(cfg[group])
        if not hasattr(node, "check"):
            raise ConfigError(f"{group}: this option has no schema; start from one of: {', '.join({**SCHEMAS, **OPTIONAL_SCHEMAS}[group])}")
        node.check(group)
        typed[group] = node
    for group, node in typed.items():
        _require_finite(group, node)
    size = typed["data"].image_size
    padding = typed["augmentation"].crop_padding
    require(padding < size, "augmentation.crop_padding", padding, f"an integer below data.image_size={size}")
    cutout = typed["augmentation"].cutout_size
    require(cutout <= size, "augmentation.cutout_size", cutout, f"an integer up to data.image_size={size}")
    typed.setdefault("hparams_search", None)
    # Paths become absolute here, once, against the directory the command ran from: code below
    # the entry point never asks Hydra where that was.
    typed["data"].root = to_absolute_path(typed["data"].root)
    if typed["lr_finder"].file:
        typed["lr_finder"].file = to_absolute_path(str(typed["lr_finder"].file))
    resume_from = cfg.get("resume_from")
    resume_from = None if resume_from is None else to_absolute_path(str(resume_from))
    return RunConfig(**typed, resume_from=resume_from, reproduced_from=cfg.get("reproduced_from"), composed=cfg)


register_schemas()
