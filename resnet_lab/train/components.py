"""The parts a training job and an LR range test share, built from a composed config."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from resnet_lab.augment import build_augment
from resnet_lab.config import ConfigError, RunConfig
from resnet_lab.config.schema import AUTO
from resnet_lab.config.targets import build_typed
from resnet_lab.data import DeviceLoader, resident_splits
from resnet_lab.train.compiled import compile_mode, compiled_model
from resnet_lab.train.distributed import check_strategy, ddp_device
from resnet_lab.train.environment import seed_everything, select_device, select_precision
from resnet_lab.train.placement import place_job
from resnet_lab.train.torchrun import World


@dataclass
class Components:
    """What a training job and an LR range test share: model, loaders, device, precision."""

    model: nn.Module
    train_loader: DeviceLoader
    eval_loader: DeviceLoader
    device: torch.device
    precision: str
    classes: list[str]
    eval_name: str
    world: World | None = None  # this rank's place under trainer.strategy=ddp; None: one process
    test_loader: DeviceLoader | None = None  # beside a validation split: the test split, scored once at the end
    compile_mode: str | None = None  # torch.compile mode; None: eager
    compiled: nn.Module | None = None  # `model` under torch.compile, shared with earlier jobs (one process only)


def build_components(run: RunConfig, slot: tuple[int, int] | None = None) -> Components:
    """`slot`: this job's (number, jobs at once) under a parallel launcher, which pins its device."""
    trainer_cfg, data_cfg = run.trainer, run.data
    auto_lr = run.scheduler.max_lr == AUTO and not run.lr_finder.file
    world = check_strategy(trainer_cfg.strategy, data_cfg.batch_size, data_cfg.eval_batch_size, data_cfg.drop_last, auto_lr)
    device = ddp_device(select_device(trainer_cfg), world) if world is not None else place_job(select_device(trainer_cfg), slot)
    seed_everything(trainer_cfg.seed, trainer_cfg.deterministic)

    splits = resident_splits(data_cfg, Path(data_cfg.root), device)
    num_classes = run.model.num_classes or splits.num_classes
    if num_classes != splits.num_classes:
        raise ConfigError(f"model.num_classes={num_classes} is not allowed: the data has {splits.num_classes} classes (use null)")
    model = build_typed(run.model, num_classes=num_classes)
    channels_last = trainer_cfg.channels_last and device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    mode = compile_mode(trainer_cfg.compile, device)
    compiled = None
    if mode is not None and world is None:
        identity = {
            "model": asdict(run.model),
            "classes": num_classes,
            "device": str(device),
            "channels_last": channels_last,
        }
        model, compiled = compiled_model(model, mode, identity)

    shard = dict(rank=world.rank, world=world.size) if world is not None else {}
    loader_options = dict(mean=data_cfg.mean, std=data_cfg.std, device=device, channels_last=channels_last, **shard)
    train_loader = DeviceLoader(
        splits.train_images,
        splits.train_labels,
        data_cfg.batch_size,
        shuffle=True,
        drop_last=data_cfg.drop_last,
        augment=build_augment(run.augmentation),
        alternate_flip=run.augmentation.alternate_flip,
        seed=trainer_cfg.seed,
        **loader_options,
    )
    eval_loader = DeviceLoader(splits.eval_images, splits.eval_labels, data_cfg.eval_batch_size, **loader_options)
    test_loader = None
    if splits.test_images is not None and splits.test_labels is not None:
        test_loader = DeviceLoader(splits.test_images, splits.test_labels, data_cfg.eval_batch_size, **loader_options)
    precision = select_precision(trainer_cfg, device)
    return Components(model, train_loader, eval_loader, device, precision, splits.classes, splits.eval_name, world, test_loader, mode, compiled)
