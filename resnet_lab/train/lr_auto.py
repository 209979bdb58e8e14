"""Where a run's peak LR comes from when `scheduler.max_lr=auto`: a given lr_finder.json or a
range test on the very model and data the run is about to train."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from resnet_lab.config import ConfigError, RunConfig
from resnet_lab.config.schema import AUTO, Strategy
from resnet_lab.optim.lr_range import RangeTestResult, range_test, read_suggestion, save_result
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.train.components import Components, build_components

log = logging.getLogger(__name__)


def run_range_test(run: RunConfig, out_dir: Path, parts: Components | None = None) -> RangeTestResult:
    if run.trainer.strategy == Strategy.ddp:
        raise ConfigError("the LR range test runs in one process: trainer.strategy='ddp' is not allowed here (use trainer.strategy=single)")
    parts = parts or build_components(run)
    finder_cfg = run.lr_finder
    optimizer = build_optimizer(run.optimizer, parts.model, lr=finder_cfg.start_lr, batch_size=run.data.batch_size)
    result = range_test(parts.model, optimizer, parts.train_loader, parts.eval_loader, finder_cfg, parts.precision, run.trainer.label_smoothing)
    save_result(result, out_dir)
    return result


def resolve_max_lr(run: RunConfig, parts: Components, run_dir: Path) -> tuple[float, str]:
    """(peak LR, where it came from)."""
    if run.scheduler.max_lr != AUTO:
        return float(run.scheduler.max_lr), "config"
    if run.lr_finder.file:
        path = Path(run.lr_finder.file)
        key = run.lr_finder.suggestion.value
        max_lr = read_suggestion(path, key)
        # The run folder holds the range test it used, as when the run ran the test itself.
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("lr_finder.json", "lr_finder.png"):
            source = path.with_name(name) if name.endswith(".png") else path
            if source.is_file() and source.resolve() != (run_dir / name).resolve():
                shutil.copy2(source, run_dir / name)
        log.info("scheduler.max_lr=auto: the %s suggestion %.3g of %s (lr_finder.suggestion picks valley or steepest)", key, max_lr, path)
        return max_lr, str(path)
    result = run_range_test(run, run_dir, parts)
    return result.suggestion, str(run_dir / "lr_finder.json")
