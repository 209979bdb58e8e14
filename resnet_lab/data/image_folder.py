"""Reader of `train/<class>/*` + `test/<class>/*` image trees (PNG/JPEG), with strict checks.

A mismatch between splits, an empty class or an unreadable image is a user's data problem, so
each stops the run with a message that names the folder or file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnet_lab.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")


def list_classes(root: Path) -> list[str]:
    """Sorted class folders, identical in train/ and test/."""
    if not root.is_dir():
        raise ConfigError(f"data.root={root} does not exist; expected a folder with train/<class>/ and test/<class>/ images")
    found = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: data=image_folder needs {root}/train/<class>/ and {root}/test/<class>/")
        found[split] = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found[split]:
            raise DataError(f"{folder} has no class folders; expected {folder}/<class>/<image>")
    only_train = sorted(set(found["train"]) - set(found["test"]))
    only_test = sorted(set(found["test"]) - set(found["train"]))
    if only_train or only_test:
        raise DataError(f"classes differ between {root}/train and {root}/test: only in train: {only_train or 'none'}, only in test: {only_test or 'none'}")
    return found["train"]


def list_files(root: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / split / name
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not images:
            raise DataError(f"empty class folder {folder}: no {'/'.join(EXTENSIONS)} images")
        files += [(path, label) for path in images]
    return files


def decode(files: list[tuple[Path, int]], image_size: int, workers: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image to uint8 [N, 3, H, W]; PIL releases the GIL, so threads overlap decodes."""
    images: np.ndarray = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)

    def load(index: int) -> None:
        path = files[index][0]
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise DataError(f"unreadable image {path}: {type(error).__name__}: {error}") from error
        if pixels.shape[:2] != (image_size, image_size):
            raise DataError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {image_size}x{image_size} (data.image_size)")
        images[index] = pixels

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, range(len(files))))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels
