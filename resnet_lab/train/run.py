"""One training job from a composed config: the function Hydra calls for every run or trial."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from resnet_lab.augment import build_augment
from resnet_lab.config import ConfigError, validate
from resnet_lab.config.targets import build
from resnet_lab.data import DeviceLoader, load_splits
from resnet_lab.optim import build_optimizer, build_scheduler
from resnet_lab.train.checkpoint import BEST, LAST, load_checkpoint, resolve_checkpoint, save_checkpoint
from resnet_lab.train.environment import git_commit, seed_everything, select_device, select_precision
from resnet_lab.train.loop import EpochMetrics, Trainer
from resnet_lab.train.outputs import plot_curves, write_json, write_metrics_csv

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig) -> tuple[Trainer, list[str], str]:
    """Model, data, optimizer and schedule from the config; returns (trainer, classes, eval split)."""
    typed = validate(cfg)
    trainer_cfg, data_cfg = typed["trainer"], typed["data"]
    device = select_device(trainer_cfg)
    seed_everything(trainer_cfg.seed, trainer_cfg.deterministic)

    splits = load_splits(data_cfg, Path(to_absolute_path(data_cfg.root)))
    num_classes = cfg.model.num_classes or splits.num_classes
    if num_classes != splits.num_classes:
        raise ConfigError(f"model.num_classes={num_classes} is not allowed: the data has {splits.num_classes} classes (use null)")
    model = build(cfg.model, num_classes=num_classes)
    channels_last = trainer_cfg.channels_last and device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    loader_options = dict(mean=data_cfg.mean, std=data_cfg.std, device=device, channels_last=channels_last)
    train_loader = DeviceLoader(
        splits.train_images,
        splits.train_labels,
        data_cfg.batch_size,
        shuffle=True,
        drop_last=data_cfg.drop_last,
        augment=build_augment(typed["augmentation"]),
        seed=trainer_cfg.seed,
        **loader_options,
    )
    eval_loader = DeviceLoader(splits.eval_images, splits.eval_labels, data_cfg.eval_batch_size, **loader_options)

    max_lr = float(cfg.scheduler.max_lr)
    optimizer = build_optimizer(cfg.optimizer, model, lr=max_lr)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=len(train_loader), epochs=trainer_cfg.epochs)
    trainer = Trainer(
        model,
        optimizer,
        scheduler,
        train_loader,
        eval_loader,
        device,
        precision=select_precision(trainer_cfg, device),
        label_smoothing=trainer_cfg.label_smoothing,
        grad_clip=trainer_cfg.grad_clip,
        progress=trainer_cfg.progress,
    )
    return trainer, splits.classes, splits.eval_name


def run_training(cfg: DictConfig, run_dir: Path) -> float:
    """Train, writing metrics.csv, checkpoints, summary.json and curves.png into `run_dir`;
    returns the final evaluation accuracy (the objective sweepers maximise)."""
    started = time.perf_counter()
    trainer, classes, eval_name = build_trainer(cfg)
    checkpoints = run_dir / "checkpoints"
    resumed_from = _resume(cfg, trainer, run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    best = {"acc": max((m.eval_acc for m in trainer.history), default=-1.0)}

    def checkpoint(trainer: Trainer, metrics: EpochMetrics) -> None:
        # metrics.csv first: whenever last.pt exists, its epochs are in metrics.csv too.
        write_metrics_csv(run_dir / "metrics.csv", trainer.history)
        state = {"trainer": trainer.state_dict(), "epoch": metrics.epoch, "config": resolved, "classes": classes}
        save_checkpoint(checkpoints / LAST, state)
        if metrics.eval_acc > best["acc"]:
            best["acc"] = metrics.eval_acc
            save_checkpoint(checkpoints / BEST, state)

    def report(trainer: Trainer, metrics: EpochMetrics) -> None:
        log.info(
            "epoch %d/%d  train loss %.4f acc %.2f%%  %s loss %.4f acc %.2f%%  lr %.3g  %.1fs (%.0f img/s)",
            metrics.epoch, cfg.trainer.epochs, metrics.train_loss, 100 * metrics.train_acc, eval_name,
            metrics.eval_loss, 100 * metrics.eval_acc, metrics.lr, metrics.epoch_time_s, metrics.images_per_s,
        )

    history = trainer.fit(cfg.trainer.epochs, callbacks=[checkpoint, report])
    summary = _summary(trainer, history, eval_name, classes, time.perf_counter() - started, resumed_from)
    write_json(run_dir / "summary.json", summary)
    plot_curves(run_dir / "curves.png", history, eval_name)
    log.info("final %s accuracy %.2f%% (best %.2f%%); outputs in %s", eval_name, 100 * history[-1].eval_acc, 100 * summary["best_eval_acc"], run_dir)
    return history[-1].eval_acc


def _resume(cfg: DictConfig, trainer: Trainer, run_dir: Path) -> str | None:
    if cfg.resume_from is not None:
        path = resolve_checkpoint(to_absolute_path(str(cfg.resume_from)))
    elif cfg.trainer.resume:
        path = run_dir / "checkpoints" / LAST
        if not path.is_file():
            raise ConfigError(f"trainer.resume=true but {path} does not exist; run in the original directory (hydra.run.dir=<run_dir>) or pass resume_from=<run_dir>")
    else:
        return None
    state = load_checkpoint(path)
    trainer.load_state_dict(state["trainer"])
    log.info("resumed from %s after epoch %d", path, state["epoch"])
    return str(path)


def _summary(trainer: Trainer, history: list[EpochMetrics], eval_name: str, classes: list[str], wall: float, resumed_from: str | None) -> dict:
    final = history[-1]
    best = max(history, key=lambda m: m.eval_acc)
    device = trainer.device
    return {
        "eval_split": eval_name,
        "epochs": final.epoch,
        "final": final.as_row(),
        "best_eval_acc": best.eval_acc,
        "best_epoch": best.epoch,
        "best_train_acc": max(m.train_acc for m in history),
        "wall_time_s": wall,
        "train_time_s": sum(m.epoch_time_s for m in history),
        "mean_images_per_s": sum(m.images_per_s for m in history) / len(history),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": trainer.precision,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "classes": classes,
        "resumed_from": resumed_from,
    }
