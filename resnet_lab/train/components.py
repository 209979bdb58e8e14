"""The parts a training job and an LR range test share, built from a composed config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig
from torch import nn

from resnet_lab.augment import build_augment
from resnet_lab.config import ConfigError, validate
from resnet_lab.config.targets import build
from resnet_lab.data import DeviceLoader, load_splits
from resnet_lab.train.environment import seed_everything, select_device, select_precision
from resnet_lab.train.placement import place_job


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


def build_components(cfg: DictConfig) -> Components:
    typed = validate(cfg)
    trainer_cfg, data_cfg = typed["trainer"], typed["data"]
    device = place_job(select_device(trainer_cfg))
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
    precision = select_precision(trainer_cfg, device)
    return Components(model, train_loader, eval_loader, device, precision, splits.classes, splits.eval_name)
