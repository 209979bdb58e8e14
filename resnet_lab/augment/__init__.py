"""Batched augmentation on the data's device (config group `augmentation`)."""

from resnet_lab.augment.batched import Augment, Cutout, HorizontalFlip, RandomCrop, Rows, build_augment

__all__ = ["Augment", "Cutout", "HorizontalFlip", "RandomCrop", "Rows", "build_augment"]
