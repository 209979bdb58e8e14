"""Data (config group `data`): readers, the decoded uint8 cache, and the device-resident loader."""

from resnet_lab.data.datasets import Splits, load_splits, resident_splits
from resnet_lab.data.loader import DeviceLoader

__all__ = ["DeviceLoader", "Splits", "load_splits", "resident_splits"]
