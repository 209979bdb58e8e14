"""From `data` config to the train and evaluation tensors: read, cache, subset, hold out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from resnet_lab.config.schema import Cifar10DataConfig, DataConfig
from resnet_lab.data import cifar10, image_folder
from resnet_lab.data.cache import Decoded, cache_folder, fingerprint, load_or_decode
from resnet_lab.errors import ConfigError
from resnet_lab.process_cache import ProcessCache

log = logging.getLogger(__name__)
READ_MESSAGE = "data: read the splits of %s onto %s (later jobs of this process reuse them)"


@dataclass
class Splits:
    """uint8 images [N, 3, H, W] and int64 labels, still on the CPU."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    classes: list[str]
    eval_name: str  # "test", or "val" when data.val_fraction > 0
    test_images: torch.Tensor | None = None  # beside a validation split, the test split: scored once, at the end
    test_labels: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_splits(cfg: DataConfig, root: Path) -> Splits:
    """Train and evaluation splits; with data.val_fraction > 0 the evaluation split is held out of
    the training images, the same share of each class (by data.split_seed, so every run with the
    same settings holds out the same rows), and the test split is kept apart for one final score."""
    train, test, classes = _read(cfg, root)
    generator = torch.Generator().manual_seed(cfg.split_seed)
    train_order = torch.randperm(train[0].shape[0], generator=generator)
    test_order = torch.randperm(test[0].shape[0], generator=generator)
    test_index = _subset(test_order, cfg.test_subset, "data.test_subset")
    kept_test = (test[0][test_index], test[1][test_index])
    if cfg.val_fraction > 0:
        val_index, train_order = _stratified_holdout(train_order, train[1], cfg.val_fraction)
        train_index = _subset(train_order, cfg.train_subset, "data.train_subset")
        return Splits(train[0][train_index], train[1][train_index], train[0][val_index], train[1][val_index], classes, "val", *kept_test)
    train_index = _subset(train_order, cfg.train_subset, "data.train_subset")
    return Splits(train[0][train_index], train[1][train_index], *kept_test, classes, "test")


def _stratified_holdout(order: torch.Tensor, labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out indices, the rest): the first `fraction` of each class in the shuffled `order`."""
    ordered_labels = labels[order]
    held = torch.zeros(len(order), dtype=torch.bool)
    for label in ordered_labels.unique():
        members = torch.nonzero(ordered_labels == label).flatten()
        held[members[: max(1, round(fraction * len(members)))]] = True
    return order[held].sort().values, order[~held]


RESIDENT: ProcessCache[Splits] = ProcessCache("resident splits", capacity=1)  # the latest job's, on its device


def resident_splits(cfg: DataConfig, root: Path, device: torch.device) -> Splits:
    """The splits already on `device`. Within one process (a multirun, a sweep) later jobs with the
    same data settings get the very same device tensors: no listing, fingerprinting, gathering or
    copying again, which for 60,000 files would cost each trial a noticeable share of a speedrun.
    So files changed while the process runs are seen only by the next process. One entry is kept,
    so a multirun over data settings holds one copy at a time."""
    key = (str(root), cfg.format, cfg.image_size, cfg.split_seed, cfg.val_fraction, cfg.train_subset, cfg.test_subset, str(device))
    resident = RESIDENT.get(key)
    if resident is None:
        RESIDENT.reset()  # the previous splits leave the device before the next ones arrive
        log.info(READ_MESSAGE, root, device)
        splits = load_splits(cfg, root)
        resident = RESIDENT.put(
            key,
            replace(
                splits,
                train_images=splits.train_images.to(device),
                train_labels=splits.train_labels.to(device),
                eval_images=splits.eval_images.to(device),
                eval_labels=splits.eval_labels.to(device),
                test_images=None if splits.test_images is None else splits.test_images.to(device),
                test_labels=None if splits.test_labels is None else splits.test_labels.to(device),
            ),
        )
    return resident


def ensure_readable(cfg: DataConfig, root: Path) -> None:
    """Find (or, for cifar10 with download=true, fetch) the data before a run creates anything:
    a run refused for its data leaves no W&B run and no outputs behind."""
    if isinstance(cfg, Cifar10DataConfig):
        cifar10.ensure_available(root, cfg.download)
    else:
        image_folder.list_classes(root)


def _subset(order: torch.Tensor, size: int | None, key: str) -> torch.Tensor:
    if size is None:
        return order.sort().values
    if size > len(order):
        raise ConfigError(f"{key}={size} is not allowed: only {len(order)} images are available")
    return order[:size].sort().values


def _read(cfg: DataConfig, root: Path) -> tuple[Decoded, Decoded, list[str]]:
    if isinstance(cfg, Cifar10DataConfig):
        cifar10.ensure_available(root, cfg.download)
        folder = cache_folder(root, cfg.cache_dir)
        classes = cifar10.read_classes(root)
        splits = []
        for split in ("train", "test"):
            files = cifar10.batch_files(root, split)
            key = fingerprint(files, "cifar10", cfg.image_size)
            splits.append(load_or_decode(folder, f"cifar10-{split}", key, partial(cifar10.read_split, root, split, cfg.image_size)))
        return splits[0], splits[1], classes
    classes = image_folder.list_classes(root)
    folder = cache_folder(root, cfg.cache_dir)
    splits = []
    for split in image_folder.SPLITS:
        labelled = image_folder.list_files(root, split, classes)
        key = fingerprint([path for path, _ in labelled], "image_folder", cfg.image_size, classes)
        splits.append(load_or_decode(folder, f"image_folder-{split}", key, partial(image_folder.decode, labelled, cfg.image_size)))
    return splits[0], splits[1], classes
