"""One training job from a composed config: the function Hydra calls for every run or trial."""

from __future__ import annotations

import errno
import gc
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from resnet_lab.config import RunConfig
from resnet_lab.config.schema import PrunerKind, TTAMode
from resnet_lab.data.datasets import ensure_readable
from resnet_lab.data.loader import DeviceLoader
from resnet_lab.errors import DeviceOutOfMemory, DiskFullError, TrialPruned
from resnet_lab.explain import explain_misclassified
from resnet_lab.explain.gradcam import target_layer, target_layer_name
from resnet_lab.files import check_writable, write_json
from resnet_lab.job import JobContext
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.optim.schedulers import build_scheduler, peak_epoch
from resnet_lab.track import Tracker, build_tracker
from resnet_lab.train.checkpoint import BEST, LAST, load_resume, run_footprint_bytes, save_checkpoint
from resnet_lab.train.components import Components, build_components
from resnet_lab.train.ema import WeightAverage
from resnet_lab.train.loop import EpochCallback, EpochMetrics, LoopOptions, Trainer, TrainingInterrupted
from resnet_lab.train.lr_auto import resolve_max_lr
from resnet_lab.train.outputs import RunResult, evaluated, plot_curves, run_summary, write_metrics_csv
from resnet_lab.train.progress import CpuEstimate, ProgressLog
from resnet_lab.train.signals import stop_on_signals
from resnet_lab.train.torchrun import world
from resnet_lab.trial import TrialReporter

log = logging.getLogger(__name__)


def build_trainer(run: RunConfig, parts: Components | None = None, max_lr: float | None = None) -> tuple[Trainer, list[str], str]:
    """Components plus optimizer and schedule; returns (trainer, classes, eval split name).
    `max_lr` replaces `scheduler.max_lr` (needed when that is `auto`)."""
    parts = parts or build_components(run)
    peak = float(run.scheduler.max_lr if max_lr is None else max_lr)
    optimizer = build_optimizer(run.optimizer, parts.model, lr=peak, batch_size=run.data.batch_size)
    scheduler = build_scheduler(run.scheduler, optimizer, steps_per_epoch=len(parts.train_loader), epochs=run.trainer.epochs, max_lr=peak)
    settings = run.trainer
    options = LoopOptions(
        label_smoothing=settings.label_smoothing,
        grad_clip=settings.grad_clip,
        show_progress=settings.progress and (parts.world is None or parts.world.is_main),
        tta=settings.tta,
        eval_every=settings.eval_every,
        ema=None if settings.ema_decay is None else WeightAverage(parts.model, settings.ema_decay, settings.ema_every, settings.ema_lookahead),
    )
    trainer = Trainer(parts, optimizer, scheduler, options)
    return trainer, parts.classes, parts.eval_name


def run_training(run: RunConfig, job: JobContext) -> RunResult:
    """Train, writing metrics.csv, checkpoints, summary.json, curves.png (and the explain
    outputs) into the job's run folder, tracked in one W&B run that is finished even on failure;
    returns the result (its objective is what sweepers maximise)."""
    started = time.perf_counter()
    run_dir = job.run_dir
    resolved = run.resolved()
    # Under ddp only rank 0 writes: the run directory, checkpoints and the one W&B run.
    main = world().is_main
    # A refused resume must leave nothing behind: the checkpoint is checked before W&B starts.
    resume = load_resume(run, resolved, run_dir)
    ensure_readable(run.data, Path(run.data.root))
    tracker = build_tracker(run.logger, job, resolved, job_type="train") if main else Tracker()
    exit_code, out_of_memory = 1, False
    try:
        prepared = _prepare(run, job, tracker, main, resume)
        try:
            history = _fit(run, job, prepared, resolved, tracker, main)
        except TrialPruned as pruned:
            _finish_pruned(run, job, prepared, tracker, started, pruned)
            exit_code = 0  # stopped on purpose: its W&B run ends cleanly
            print(f"pruned after epoch {pruned.epoch}; rerun it to the end: python -m resnet_lab.reproduce {run_dir}")
            raise
        result = RunResult.of(history, prepared.trainer.train_loader.num_samples)
        if main:
            _finish(run, job, prepared, history, tracker, started)
        exit_code = 0
    except torch.cuda.OutOfMemoryError:
        out_of_memory = True
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise DiskFullError(
            f"no space left on the device while writing {error.filename or run_dir}; the last complete checkpoint is intact: "
            f"free some space, then resume with: {job.resume_command()}"
        ) from None
    finally:
        tracker.finish(exit_code)
    if out_of_memory:
        # Outside the except block, so the failed job's tensors are unreachable and the next
        # trial of a sweep starts with the memory released.
        gc.collect()
        torch.cuda.empty_cache()
        batch = run.data.batch_size
        raise DeviceOutOfMemory(
            f"CUDA out of memory with data.batch_size={batch}; try data.batch_size={max(1, batch // 2)} (or a smaller model.width_multiplier)"
        )
    if main:
        print(f"reproduce this run: python -m resnet_lab.reproduce {run_dir}")
        if job.sweep_dir is None:
            print(next_steps(run_dir, job.overrides, tracked=(run_dir / "wandb").is_dir()))
    return result


def next_steps(run_dir: Path, overrides: Sequence[str], tracked: bool) -> str:
    """What a single run's user can do next with it, each as a command to copy."""
    sweep = " ".join(["python -m resnet_lab.train -m", *(o for o in overrides if not o.startswith(("scheduler.max_lr=", "hydra.run.dir=")))])
    steps = [f"  browse it:    wandb leet {run_dir / 'wandb'}"] if tracked else []
    steps += [
        f"  evaluate it:  python -m resnet_lab.evaluate {run_dir}",
        f"  explain it:   python -m resnet_lab.explain {run_dir} [images or folders]",
        f"  sweep max_lr: {sweep} scheduler.max_lr=0.05,0.1,0.2",
        f"  tune it:      {sweep} hparams_search=optuna",
    ]
    return "\n".join([f"outputs: {run_dir} (summary.json, metrics.csv, curves.png, checkpoints/); next:", *steps])


@dataclass
class PreparedRun:
    """A job's trainer, ready to fit (resumed when asked), with what its outputs report."""

    trainer: Trainer
    classes: list[str]
    eval_name: str
    max_lr: float
    max_lr_source: str
    resumed_from: str | None
    test_loader: DeviceLoader | None = None  # beside a validation split; None under ddp (scored by no rank)


def _prepare(run: RunConfig, job: JobContext, tracker: Tracker, main: bool, resume: tuple[Path, dict] | None) -> PreparedRun:
    """Builds the parts, checks what would otherwise fail after training, restores a resume."""
    parts = build_components(run, job.slot)
    max_lr, max_lr_source = resolve_max_lr(run, parts, job.run_dir)
    trainer, classes, eval_name = build_trainer(run, parts, max_lr)
    if run.gallery is not None:  # a wrong GradCAM layer is refused before training, not after it
        target_layer(trainer.model, target_layer_name(trainer.model, run.gallery.target_layer))
    if main:
        checkpoints = job.run_dir / "checkpoints"
        # A resumed run's own checkpoints are replaced, not added to: their space counts as free.
        replaced = sum(path.stat().st_size for path in (checkpoints / LAST, checkpoints / BEST) if path.is_file())
        check_writable(checkpoints, run_footprint_bytes(trainer.model, tracked=tracker.active, explained=run.gallery is not None) - replaced)
    resumed_from = None
    if resume is not None:
        path, state = resume
        trainer.load_state_dict(state["trainer"])
        log.info("resumed from %s after epoch %d", path, state["epoch"])
        resumed_from = str(path)
    steps_left = (run.trainer.epochs - len(trainer.history)) * len(trainer.train_loader)
    if main and trainer.device.type == "cpu":
        why = "trainer.device=cpu" if torch.cuda.is_available() else "no CUDA"
        trainer.step_hooks.append(CpuEstimate(steps_left, why, suggest_quick="experiment=quick" not in job.overrides))
    if main and not (run.trainer.progress and sys.stderr.isatty()):
        trainer.step_hooks.append(ProgressLog(steps_left))  # no progress bar shows: a line every 30 s instead
    test_loader = parts.test_loader if parts.world is None else None
    return PreparedRun(trainer, classes, eval_name, max_lr, max_lr_source, resumed_from, test_loader)


def _fit(run: RunConfig, job: JobContext, prepared: PreparedRun, resolved: dict, tracker: Tracker, main: bool) -> list[EpochMetrics]:
    """Trains to the end, checkpointing and reporting every epoch (rank 0 only); on a signal,
    saves the state and prints the resume command."""
    trainer, classes, eval_name, epochs = prepared.trainer, prepared.classes, prepared.eval_name, run.trainer.epochs
    checkpoints = job.run_dir / "checkpoints"
    best = {"acc": max((m.eval_acc for m in evaluated(trainer.history)), default=-1.0)}

    # What every checkpoint carries beside the weights: the config, the option chosen in each
    # group (so a saved run is rebuilt from the same options, not ones guessed from _target_), classes.
    saved = {"config": resolved, "choices": dict(job.choices), "classes": classes}

    def checkpoint(trainer: Trainer, metrics: EpochMetrics) -> None:
        # metrics.csv first: whenever last.pt exists, its epochs are in metrics.csv too.
        write_metrics_csv(job.run_dir / "metrics.csv", trainer.history)
        state = {"trainer": trainer.state_dict(), "epoch": metrics.epoch, **saved}
        save_checkpoint(checkpoints / LAST, state)
        if metrics.eval_acc > best["acc"]:
            best["acc"] = metrics.eval_acc
            save_checkpoint(checkpoints / BEST, state)

    callbacks = [checkpoint, _epoch_logger(tracker, eval_name, epochs), *_trial_callbacks(run, job, len(trainer.eval_loader.labels))] if main else []
    try:
        with stop_on_signals(trainer):
            return trainer.fit(epochs, callbacks=callbacks)
    except TrainingInterrupted as interrupt:
        if not main:
            raise
        if trainer.interrupted_progress is not None:
            save_checkpoint(
                checkpoints / LAST,
                {"trainer": trainer.state_dict(), "epoch": len(trainer.history), **saved},
            )
        print(f"interrupted at {interrupt.where}; state saved in {checkpoints / LAST}")
        print(f"resume: {job.resume_command()}")
        raise


def _epoch_logger(tracker: Tracker, eval_name: str, epochs: int) -> EpochCallback:
    """The epoch's line in train.log and its values in the tracker."""

    def log_epoch(trainer: Trainer, metrics: EpochMetrics) -> None:
        scored = not math.isnan(metrics.eval_acc)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.2f%%  %s  lr %.3g  %.1fs (%.0f img/s)",
            metrics.epoch,
            epochs,
            metrics.train_loss,
            100 * metrics.train_acc,
            f"{eval_name} loss {metrics.eval_loss:.4f} acc {100 * metrics.eval_acc:.2f}%" if scored else f"({eval_name} not evaluated)",
            metrics.lr,
            metrics.epoch_time_s,
            metrics.images_per_s,
        )
        values = {
            "epoch": metrics.epoch,
            "train/loss": metrics.train_loss,
            "train/acc": metrics.train_acc,
            "lr": metrics.lr,
            "epoch_time_s": metrics.epoch_time_s,
            "images_per_s": metrics.images_per_s,
        }
        if scored:
            values |= {f"{eval_name}/loss": metrics.eval_loss, f"{eval_name}/acc": metrics.eval_acc}
        if metrics.tta_acc is not None:
            values[f"{eval_name}/tta_acc"] = metrics.tta_acc
            log.info("%s accuracy with test-time augmentation (%s): %.2f%%", eval_name, trainer.tta.value, 100 * metrics.tta_acc)
        tracker.log(values, step=metrics.epoch)

    return log_epoch


def _trial_callbacks(run: RunConfig, job: JobContext, eval_images: int) -> list[EpochCallback]:
    """In an Optuna sweep: each evaluated epoch's objective goes to the job's trial, and the
    trial stops (TrialPruned) when its pruner says so. Elsewhere: nothing."""
    if job.trial is None:
        return []
    if run.hparams_search is not None and PrunerKind(run.hparams_search.pruner.kind) == PrunerKind.schedule_halving:
        return []  # the sweeper records each complete run's final value at its rung; epochs of one run are not steps of the trial
    pruning = run.hparams_search.pruner if run.hparams_search is not None else None
    trial = TrialReporter.for_job(job.run_dir, job.trial, pruning, judge_from=peak_epoch(run.scheduler, run.trainer.epochs), eval_images=eval_images)
    if trial is None:
        return []

    def report_to_trial(trainer: Trainer, metrics: EpochMetrics) -> None:
        last = metrics.epoch >= run.trainer.epochs
        if not math.isnan(metrics.eval_acc) and trial.report(metrics.objective, metrics.epoch, last):
            raise TrialPruned(metrics.epoch, metrics.objective)

    return [report_to_trial]


def _finish(run: RunConfig, job: JobContext, prepared: PreparedRun, history: list[EpochMetrics], tracker: Tracker, started: float) -> None:
    """summary.json, curves, the GradCAM gallery and the tracker's copies."""
    trainer, classes, eval_name, run_dir = prepared.trainer, prepared.classes, prepared.eval_name, job.run_dir
    summary = _write_summary(run, job, prepared, history, tracker, started, **_test_scores(prepared))
    if run.gallery is not None:
        cells = explain_misclassified(trainer.model, trainer.eval_loader.unsharded(), classes, run.gallery, run_dir)
        tracker.log_table(
            "misclassified_gradcam",
            ["image", "gradcam_overlay", "predicted", "true", "confidence"],
            [[c.image, c.overlay, c.predicted, c.true, c.confidence] for c in cells],
            image_columns=("image", "gradcam_overlay"),
        )
    _track_outputs(tracker, run_dir, summary)
    log.info("final %s accuracy %.2f%% (best %.2f%%); outputs in %s", eval_name, 100 * history[-1].eval_acc, 100 * summary["best_eval_acc"], run_dir)


def _finish_pruned(run: RunConfig, job: JobContext, prepared: PreparedRun, tracker: Tracker, started: float, pruned: TrialPruned) -> None:
    """A pruned trial keeps what a finished run keeps up to its last epoch (metrics.csv and the
    checkpoints are already written), with `pruned` and the epoch in summary.json and W&B."""
    summary = _write_summary(run, job, prepared, prepared.trainer.history, tracker, started, pruned=True, pruned_at_epoch=pruned.epoch)
    tracker.summarise({"pruned": True, "pruned_at_epoch": pruned.epoch, "final_eval_acc": summary["final"]["eval_acc"]})
    log.info("trial pruned after epoch %d of %d (objective %.4f); outputs in %s", pruned.epoch, run.trainer.epochs, pruned.value, job.run_dir)


def _write_summary(
    run: RunConfig, job: JobContext, prepared: PreparedRun, history: list[EpochMetrics], tracker: Tracker, started: float, **extra: object
) -> dict:
    """summary.json and curves.png of the epochs trained, finished or pruned; returns the summary."""
    wall = time.perf_counter() - started
    summary = run_summary(prepared.trainer, history, prepared.eval_name, prepared.classes, wall, prepared.resumed_from)
    # The job's own start and end on the wall clock: a batch's Optuna trials all carry the batch's.
    finished = time.time()
    summary.update(started_unix_s=finished - wall, finished_unix_s=finished)
    summary.update(max_lr=prepared.max_lr, max_lr_source=prepared.max_lr_source, reproduced_from=run.reproduced_from, wandb_run_dir=tracker.run_dir, **extra)
    write_json(job.run_dir / "summary.json", summary)
    plot_curves(job.run_dir / "curves.png", history, prepared.eval_name)
    return summary


def _test_scores(prepared: PreparedRun) -> dict[str, dict[str, float | int | None]]:
    """Beside a validation split (what the run selected and reported on), the final model's score
    on the test split, measured once, at the end: {"test": {acc, tta_acc, images}}, or nothing."""
    trainer, loader = prepared.trainer, prepared.test_loader
    if loader is None:
        return {}
    accuracy = trainer.evaluate(loader)[1]
    tta = trainer.evaluate(loader, tta=trainer.tta)[1] if trainer.tta != TTAMode.none else None
    log.info("test accuracy of the final model (measured once, not used for selection): %.2f%%", 100 * (accuracy if tta is None else tta))
    return {"test": {"acc": accuracy, "tta_acc": tta, "images": len(loader.labels)}}


def _track_outputs(tracker: Tracker, run_dir: Path, summary: dict) -> None:
    tracker.log_images(
        {
            "curves": run_dir / "curves.png",
            "lr_finder": run_dir / "lr_finder.png",
            "confusion_matrix": run_dir / "confusion_matrix.png",
            "misclassified_gradcam_grid": run_dir / "misclassified_gradcam.png",
        }
    )
    tracker.summarise(
        {
            key: summary[key]
            for key in ("best_eval_acc", "best_epoch", "best_train_acc", "wall_time_s", "num_params", "max_lr", "precision", "device_name", "torch_version")
        }
        | {"final_eval_acc": summary["final"]["eval_acc"], "final_train_acc": summary["final"]["train_acc"]}
    )
    if (run_dir / "checkpoints" / BEST).is_file():
        tracker.log_artifact("best-checkpoint", "model", run_dir / "checkpoints" / BEST)
    if (run_dir / ".hydra").is_dir():
        tracker.log_artifact("hydra-config", "config", run_dir / ".hydra")
