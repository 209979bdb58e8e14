"""Reader of the CIFAR-10 python batches (`cifar-10-batches-py/`), the format torchvision downloads.

The pickles are read here rather than through `torchvision.datasets.CIFAR10` because that class
insists on the official files' MD5 sums, which rules out the small batch files tests write; the
download itself is torchvision's.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from resnet_lab.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"


def batch_files(root: Path, split: str) -> list[Path]:
    names = TRAIN_FILES if split == "train" else TEST_FILES
    return [root / FOLDER / name for name in names]


def ensure_available(root: Path, download: bool) -> None:
    """Download when asked and missing; otherwise stop with what to do instead."""
    folder = root / FOLDER
    missing = [p.name for p in batch_files(root, "train") + batch_files(root, "test") + [folder / META_FILE] if not p.is_file()]
    if not missing:
        return
    if download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(root), train=True, download=True)
        except Exception as error:
            raise DataError(
                f"could not download CIFAR-10 into data.root={root} ({type(error).__name__}: {error}); "
                "offline, use data=image_folder data.root=<dir with train/ and test/> (e.g. the JPEG copy)"
            ) from error
        return
    raise DataError(
        f"CIFAR-10 python batches not found: {folder} lacks {', '.join(missing)} (data.root={root}); "
        "set data.download=true with internet, or use data=image_folder data.root=<dir with train/ and test/>"
    )


def read_classes(root: Path) -> list[str]:
    meta = _unpickle(root / FOLDER / META_FILE)
    return [str(name) for name in meta["label_names"]]


def read_split(root: Path, split: str, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 [N, 3, H, W] and labels as int64 [N]."""
    images, labels = [], []
    for path in batch_files(root, split):
        entry = _unpickle(path)
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * image_size * image_size:
            raise DataError(f"{path}: rows of {data.shape[-1]} values, expected 3*{image_size}*{image_size} (data.image_size={image_size})")
        images.append(data.reshape(-1, 3, image_size, image_size))
        labels.append(np.asarray(entry["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
    except Exception as error:
        raise DataError(f"unreadable CIFAR-10 batch file {path}: {type(error).__name__}: {error}") from error
    if not isinstance(entry, dict):
        raise DataError(f"unreadable CIFAR-10 batch file {path}: not a pickled dict")
    return entry
