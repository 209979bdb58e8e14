"""LR range test with torch-lr-finder on the device-resident loaders, plus the two suggestions.

torch-lr-finder's own pick is the point of steepest descent of the smoothed loss; it is easily
pulled to the very start of the curve by noise. The "valley" pick (fastai's idea) takes the
longest stretch over which the loss keeps falling and goes about halfway into it, which lands
reliably below the divergence point; sweeps and `max_lr=auto` use it by default.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_lr_finder import LRFinder
from torch_lr_finder.lr_finder import TrainDataLoaderIter, ValDataLoaderIter

from resnet_lab.config.schema import LRFinderConfig, StepMode, Suggestion
from resnet_lab.data.loader import DeviceLoader
from resnet_lab.errors import ConfigError
from resnet_lab.files import write_json
from resnet_lab.optim.group_spec import GroupSpec
from resnet_lab.plotting import pyplot

log = logging.getLogger(__name__)


class _EvalBatches(ValDataLoaderIter):
    """torch-lr-finder averages over `len(dataset)`; a DeviceLoader knows its sample count."""

    @property
    def dataset(self) -> range:
        return range(self.data_loader.num_samples)


@dataclass
class RangeTestResult:
    lr: list[float]
    loss: list[float]
    steepest: float
    valley: float
    chosen: str
    settings: dict = field(default_factory=dict)
    diverged: bool = False

    @property
    def suggestion(self) -> float:
        return self.steepest if self.chosen == Suggestion.steepest.value else self.valley

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["suggestion"] = self.suggestion
        payload["why"] = (
            "valley: the middle of the longest stretch of falling loss; steadier than the steepest-gradient "
            "point, which noise can drag to the flat start of the curve"
        )
        return payload


def valley(lrs: list[float], losses: list[float]) -> float:
    """LR about halfway into the longest run of decreasing loss (a longest-decreasing-subsequence
    search over the points, O(n^2) for the ~100 points of a range test)."""
    n = len(losses)
    run_length = [1] * n
    best_end = 0
    for i in range(1, n):
        run_length[i] = 1 + max((run_length[j] for j in range(i) if losses[j] > losses[i]), default=0)
        if run_length[i] > run_length[best_end]:
            best_end = i
    start = best_end - run_length[best_end] + 1
    third = (best_end - start) / 3
    return float(lrs[min(n - 1, start + int(third + third / 2))])


@torch.no_grad()
def _in_group_units(optimizer: torch.optim.Optimizer, *_) -> None:
    """torch-lr-finder gives every group the same LR, in scheduler.max_lr's units; before each step
    this applies each group's `lr_scale` (norm_bias_lr_scale, decoupled SGD), so the test trains
    as a run at that max_lr would. Decoupled SGD's decay per step does not depend on max_lr: it is
    applied here directly, at the steady-state size it reaches through the momentum, since a
    coefficient rescaled at every step would pile up in the momentum buffer as the LR climbs.
    The finder's closed-form schedule sets the plain LR again after the step."""
    for group in optimizer.param_groups:
        spec = GroupSpec.of(group)
        group["lr"] *= spec.lr_scale
        if spec.decoupled_decay is not None:
            group["weight_decay"] = 0.0
            shrink = spec.decoupled_decay * spec.lr_scale / (1 - group["momentum"])
            torch._foreach_mul_(group["params"], 1 - shrink)


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: DeviceLoader,
    eval_loader: DeviceLoader | None,
    cfg: LRFinderConfig,
    precision: str,
    label_smoothing: float = 0.0,
) -> RangeTestResult:
    """Runs the test and puts model and optimizer back exactly as they were."""
    device = train_loader.device
    amp = {}
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        amp = dict(
            amp_backend="torch",
            amp_config={"device_type": device.type, "dtype": dtype},
            grad_scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        )

    def criterion(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)

    finder = LRFinder(model, optimizer, criterion, device=device, **amp)
    hook = optimizer.register_step_pre_hook(_in_group_units)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its closing print names a placeholder ("{finder_name}.plot()"), not our result
            finder.range_test(
                TrainDataLoaderIter(train_loader),
                val_loader=_EvalBatches(eval_loader) if cfg.use_val_loss and eval_loader is not None else None,
                start_lr=cfg.start_lr,
                end_lr=cfg.end_lr,
                num_iter=cfg.num_iter,
                step_mode=StepMode(cfg.step_mode).value,
                smooth_f=cfg.smoothing,
                diverge_th=cfg.diverge_threshold,
            )
    finally:
        hook.remove()
        finder.reset()
    lrs, losses = finder.history["lr"], finder.history["loss"]
    usable = len(lrs) - cfg.skip_start - cfg.skip_end
    if usable < 3 or not all(math.isfinite(x) for x in losses[: cfg.skip_start + usable]):
        raise ConfigError(
            f"the LR range test diverged after {len(lrs)} of {cfg.num_iter} steps, too early to suggest an LR; "
            f"lower lr_finder.start_lr={cfg.start_lr} or lr_finder.skip_start={cfg.skip_start}"
        )
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(7, 4.5))
    with contextlib.redirect_stdout(io.StringIO()):  # torch-lr-finder prints its own pick; our log line says which one is used
        _, steepest = finder.plot(skip_start=cfg.skip_start, skip_end=cfg.skip_end, log_lr=True, suggest_lr=True, ax=axis)
    plt.close(figure)
    window = slice(cfg.skip_start, len(lrs) - cfg.skip_end)
    return RangeTestResult(
        lr=[float(x) for x in lrs],
        loss=[float(x) for x in losses],
        steepest=float(steepest),
        valley=valley(lrs[window], losses[window]),
        chosen=Suggestion(cfg.suggestion).value,
        settings={k: (v.value if hasattr(v, "value") else v) for k, v in asdict(cfg).items()},
        diverged=len(lrs) < cfg.num_iter,
    )


def save_result(result: RangeTestResult, out_dir: Path) -> Path:
    """lr_finder.json and lr_finder.png (loss vs LR, log axis, both picks marked)."""
    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "lr_finder.json"
    write_json(path, result.to_json())
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(result.lr, result.loss, color="tab:blue", label="smoothed loss")
    for name, lr, colour in (("steepest", result.steepest, "tab:red"), ("valley", result.valley, "tab:green")):
        index = min(range(len(result.lr)), key=lambda i: abs(math.log(result.lr[i]) - math.log(lr)))
        marker = "*" if name == result.chosen else "o"
        axis.scatter([lr], [result.loss[index]], s=140, color=colour, marker=marker, zorder=3, label=f"{name}: {lr:.3g}")
    axis.set_xscale("log")
    finite = [x for x in result.loss if math.isfinite(x)]
    axis.set_ylim(min(finite) * 0.95, min(max(finite), 3 * min(finite)) * 1.05)
    axis.set(xlabel="learning rate", ylabel="loss", title=f"LR range test (sweeps use: {result.chosen})")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "lr_finder.png", dpi=100)
    plt.close(figure)
    log.info("LR range test: steepest %.3g, valley %.3g -> using %s=%.3g (%s)", result.steepest, result.valley, result.chosen, result.suggestion, path)
    return path


def read_suggestion(path: str | Path, key: str = "suggestion") -> float:
    """The chosen LR stored in an lr_finder.json (or a named pick: valley / steepest)."""
    import json

    file = Path(path)
    try:
        payload = json.loads(file.read_text())
        value = float(payload[key])
    except FileNotFoundError as error:
        raise ConfigError(f"lr_finder.json not found at {file}; run python -m resnet_lab.lr_find first or leave the path null") from error
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{file} is not an lr_finder.json with a '{key}' value ({type(error).__name__}: {error})") from error
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{file}: {key}={value} is not a usable learning rate")
    return value
