"""Typed schemas of every config group option.

Each YAML option in conf/ names its schema first in its defaults list, so Hydra rejects unknown
keys and wrong types while composing; `validate` then checks ranges and cross-key rules on the
composed config, before anything is built. Both kinds of failure surface as one line (cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from resnet_lab.config.errors import ConfigError, require

CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2470, 0.2435, 0.2616]


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


def _probability(key: str, value: float) -> None:
    require(0.0 <= value <= 1.0, key, value, "a probability in [0, 1]")


def _positive(key: str, value: float) -> None:
    require(value > 0, key, value, "a number > 0")


def _non_negative(key: str, value: float) -> None:
    require(value >= 0, key, value, "a number >= 0")


@dataclass
class ModelConfig:
    _target_: str = "resnet_lab.models.custom_resnet"
    width_multiplier: float = 1.0
    dropout: float = 0.0
    head_pool: HeadPool = HeadPool.avg
    num_classes: Optional[int] = None
    logit_scale: Optional[float] = None
    bn_momentum: float = 0.1
    bn_scale_trainable: bool = True

    def check(self, key: str) -> None:
        require(0.0 < self.bn_momentum <= 1.0, f"{key}.bn_momentum", self.bn_momentum, "a value in (0, 1]")
        # 16x the base widths is already a 1.7-billion-parameter net; beyond that is a typo.
        require(0 < self.width_multiplier <= 16, f"{key}.width_multiplier", self.width_multiplier, "a number in (0, 16]")
        require(0.0 <= self.dropout < 1.0, f"{key}.dropout", self.dropout, "a value in [0, 1)")
        if self.num_classes is not None:
            require(self.num_classes >= 2, f"{key}.num_classes", self.num_classes, "null (from the data) or an integer >= 2")
        if self.logit_scale is not None:
            _positive(f"{key}.logit_scale", self.logit_scale)


@dataclass
class DataConfig:
    format: DataFormat = MISSING
    root: str = MISSING
    download: bool = False
    image_size: int = 32
    batch_size: int = 512
    eval_batch_size: int = 1024
    drop_last: bool = True
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    val_fraction: float = 0.0
    split_seed: int = 0
    mean: List[float] = field(default_factory=lambda: list(CIFAR10_MEAN))
    std: List[float] = field(default_factory=lambda: list(CIFAR10_STD))
    cache_dir: Optional[str] = None

    def check(self, key: str) -> None:
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
        if self.download:
            require(self.format == DataFormat.cifar10, f"{key}.download", self.download, "true only with data=cifar10")


@dataclass
class AugmentationConfig:
    crop_padding: int = 0
    padding_mode: PadMode = PadMode.reflect
    flip_p: float = 0.0
    cutout_size: int = 0
    cutout_p: float = 0.0
    alternate_flip: bool = False

    def check(self, key: str) -> None:
        if self.alternate_flip:
            require(self.flip_p == 0.5, f"{key}.flip_p", self.flip_p, "0.5 with alternate_flip=true (half the images are flipped each epoch)")
        _non_negative(f"{key}.crop_padding", self.crop_padding)
        _non_negative(f"{key}.cutout_size", self.cutout_size)
        _probability(f"{key}.flip_p", self.flip_p)
        _probability(f"{key}.cutout_p", self.cutout_p)


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = True
    implementation: OptimizerImplementation = OptimizerImplementation.auto
    norm_bias_lr_scale: float = 1.0

    def check(self, key: str) -> None:
        _non_negative(f"{key}.weight_decay", self.weight_decay)
        _positive(f"{key}.norm_bias_lr_scale", self.norm_bias_lr_scale)


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    momentum: float = 0.9
    nesterov: bool = True
    decoupled: bool = False

    def check(self, key: str) -> None:
        super().check(key)
        require(0.0 <= self.momentum < 1.0, f"{key}.momentum", self.momentum, "a value in [0, 1)")
        if self.nesterov:
            require(self.momentum > 0, f"{key}.nesterov", self.nesterov, "false when momentum is 0")


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, key: str) -> None:
        super().check(key)
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), f"{key}.betas", self.betas, "two values in [0, 1)")
        _positive(f"{key}.eps", self.eps)


AUTO = "auto"


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    max_lr: Union[float, int, str] = 0.1

    def check(self, key: str) -> None:
        if isinstance(self.max_lr, str):
            require(self.max_lr == AUTO, f"{key}.max_lr", self.max_lr, "a number > 0 or 'auto' (take it from an LR range test)")
        else:
            _positive(f"{key}.max_lr", self.max_lr)


@dataclass
class OneCycleConfig(SchedulerConfig):
    _target_: str = "resnet_lab.optim.schedulers.one_cycle"
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: AnnealStrategy = AnnealStrategy.cos
    three_phase: bool = False

    def check(self, key: str) -> None:
        super().check(key)
        require(0.0 < self.pct_start < 1.0, f"{key}.pct_start", self.pct_start, "a fraction in (0, 1)")
        _positive(f"{key}.div_factor", self.div_factor)
        _positive(f"{key}.final_div_factor", self.final_div_factor)


@dataclass
class CosineConfig(SchedulerConfig):
    _target_: str = "resnet_lab.optim.schedulers.cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0

    def check(self, key: str) -> None:
        super().check(key)
        _non_negative(f"{key}.warmup_epochs", self.warmup_epochs)
        _non_negative(f"{key}.min_lr", self.min_lr)


@dataclass
class StepConfig(SchedulerConfig):
    _target_: str = "resnet_lab.optim.schedulers.step"
    step_epochs: int = 10
    gamma: float = 0.1

    def check(self, key: str) -> None:
        super().check(key)
        require(self.step_epochs >= 1, f"{key}.step_epochs", self.step_epochs, "an integer >= 1")
        require(0.0 < self.gamma <= 1.0, f"{key}.gamma", self.gamma, "a factor in (0, 1]")


@dataclass
class ConstantConfig(SchedulerConfig):
    _target_: str = "resnet_lab.optim.schedulers.constant"


@dataclass
class TrainerConfig:
    device: Device = Device.auto
    epochs: int = 24
    precision: Precision = Precision.auto
    channels_last: bool = True
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None
    seed: int = 0
    deterministic: bool = False
    resume: bool = False
    resume_fallback_best: bool = False
    progress: bool = True
    strategy: Strategy = Strategy.single
    compile: CompileMode = CompileMode.auto
    tta: TTAMode = TTAMode.none
    eval_every: int = 1
    ema_decay: Optional[float] = None
    ema_every: int = 5
    ema_lookahead: bool = False

    def check(self, key: str) -> None:
        if self.ema_lookahead:
            require(self.ema_decay is not None, f"{key}.ema_lookahead", self.ema_lookahead, "false while ema_decay is null (Lookahead needs the average's decay)")
        if self.ema_decay is not None:
            require(0.0 < self.ema_decay < 1.0, f"{key}.ema_decay", self.ema_decay, "null (off) or a value in (0, 1)")
        require(self.ema_every >= 1, f"{key}.ema_every", self.ema_every, "an integer >= 1")
        require(self.epochs >= 1, f"{key}.epochs", self.epochs, "an integer >= 1")
        require(self.eval_every >= 0, f"{key}.eval_every", self.eval_every, "an integer >= 0 (0: only after the last epoch)")
        require(0.0 <= self.label_smoothing < 1.0, f"{key}.label_smoothing", self.label_smoothing, "a value in [0, 1)")
        if self.grad_clip is not None:
            _positive(f"{key}.grad_clip", self.grad_clip)
        require(self.seed >= 0, f"{key}.seed", self.seed, "an integer >= 0")


class StepMode(str, Enum):
    exp = "exp"
    linear = "linear"


class Suggestion(str, Enum):
    valley = "valley"
    steepest = "steepest"


@dataclass
class LRFinderConfig:
    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_iter: int = 100
    step_mode: StepMode = StepMode.exp
    smoothing: float = 0.05
    diverge_threshold: float = 5.0
    use_val_loss: bool = False
    skip_start: int = 10
    skip_end: int = 5
    suggestion: Suggestion = Suggestion.valley
    file: Optional[str] = None

    def check(self, key: str) -> None:
        _positive(f"{key}.start_lr", self.start_lr)
        require(self.end_lr > self.start_lr, f"{key}.end_lr", self.end_lr, f"a value > start_lr={self.start_lr}")
        require(self.num_iter >= 10, f"{key}.num_iter", self.num_iter, "an integer >= 10")
        require(0.0 <= self.smoothing < 1.0, f"{key}.smoothing", self.smoothing, "a value in [0, 1)")
        require(self.diverge_threshold > 1.0, f"{key}.diverge_threshold", self.diverge_threshold, "a factor > 1")
        _non_negative(f"{key}.skip_start", self.skip_start)
        _non_negative(f"{key}.skip_end", self.skip_end)
        require(self.skip_start + self.skip_end + 3 <= self.num_iter, f"{key}.num_iter", self.num_iter, "more than skip_start + skip_end + 2")


@dataclass
class HParamsSearchConfig:
    max_lr_bounds: Optional[List[float]] = None
    lr_finder_json: Optional[str] = None
    lr_low_factor: float = 10.0
    lr_high_factor: float = 3.0
    weight_decay_low: float = 1e-5
    weight_decay_high: float = 1e-3
    grid_points: int = 3

    def check(self, key: str) -> None:
        require(self.grid_points >= 2, f"{key}.grid_points", self.grid_points, "an integer >= 2")
        if self.max_lr_bounds is not None:
            bounds = self.max_lr_bounds
            require(len(bounds) == 2 and 0 < bounds[0] < bounds[1], f"{key}.max_lr_bounds", bounds, "null (from the LR range test) or [low, high] with 0 < low < high")
        require(self.lr_low_factor >= 1.0, f"{key}.lr_low_factor", self.lr_low_factor, "a factor >= 1 (low bound = suggestion / factor)")
        require(self.lr_high_factor >= 1.0, f"{key}.lr_high_factor", self.lr_high_factor, "a factor >= 1 (high bound = suggestion * factor)")
        _positive(f"{key}.weight_decay_low", self.weight_decay_low)
        require(self.weight_decay_high > self.weight_decay_low, f"{key}.weight_decay_high", self.weight_decay_high, f"a value > weight_decay_low={self.weight_decay_low}")


class LoggerKind(str, Enum):
    wandb = "wandb"
    none = "none"


WANDB_MODES = ("offline", "online", "disabled", "shared")


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.none
    mode: str = "offline"
    project: str = "resnet_lab"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)

    def check(self, key: str) -> None:
        require(self.mode in WANDB_MODES, f"{key}.mode", self.mode, f"one of {', '.join(WANDB_MODES)}")
        require(bool(self.project), f"{key}.project", self.project, "a non-empty W&B project name")


@dataclass
class ExplainConfig:
    enabled: bool = True
    n_images: int = 22
    select: GallerySelect = GallerySelect.per_class
    target_layer: str = "layer3.1"
    columns: int = 4

    def check(self, key: str) -> None:
        require(self.n_images >= 1, f"{key}.n_images", self.n_images, "an integer >= 1")
        require(self.columns >= 1, f"{key}.columns", self.columns, "an integer >= 1")


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"custom_resnet": ModelConfig},
    "data": {"cifar10": DataConfig, "image_folder": DataConfig},
    "augmentation": {"none": AugmentationConfig, "crop_flip": AugmentationConfig, "cutout": AugmentationConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamConfig},
    "scheduler": {"onecycle": OneCycleConfig, "cosine": CosineConfig, "step": StepConfig, "constant": ConstantConfig},
    "trainer": {"default": TrainerConfig},
    "lr_finder": {"default": LRFinderConfig},
    "logger": {"wandb": LoggerConfig, "none": LoggerConfig},
    "explain": {"gradcam": ExplainConfig, "none": ExplainConfig},
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
                return [name for name in schema.__dataclass_fields__ if not name.startswith("_")]
    return []


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check every group's ranges; returns the typed objects keyed by group."""
    known = GROUPS + tuple(OPTIONAL_SCHEMAS) + TOP_LEVEL_KEYS
    unknown = sorted(set(cfg) - set(known) - {"hydra"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
    typed: dict[str, Any] = {}
    for group in GROUPS + tuple(g for g in OPTIONAL_SCHEMAS if g in cfg):
        if group not in cfg:
            raise ConfigError(f"config group '{group}' is missing; allowed options: {', '.join(SCHEMAS[group])}")
        node = OmegaConf.to_object(cfg[group])
        if not hasattr(node, "check"):
            raise ConfigError(f"{group}: this option has no schema; start from one of: {', '.join({**SCHEMAS, **OPTIONAL_SCHEMAS}[group])}")
        node.check(group)
        typed[group] = node
    size = typed["data"].image_size
    padding = typed["augmentation"].crop_padding
    require(padding < size, "augmentation.crop_padding", padding, f"an integer below data.image_size={size}")
    return typed


register_schemas()
