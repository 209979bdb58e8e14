"""Decoded-once uint8 tensors: an on-disk cache beside the data plus an in-process memo.

The key hashes every source file's path, size and mtime (cheap to compute, and any edit, added or
removed image changes it), so a changed source is re-decoded rather than served stale. Within
one process (a multirun, a sweep) the memo hands later jobs the very same tensors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import torch

from resnet_lab.files import atomic_write
from resnet_lab.process_cache import ProcessCache

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
Decoded = tuple[torch.Tensor, torch.Tensor]

# A job needs its train and evaluation splits; two data settings' worth stay.
DECODED: ProcessCache[Decoded] = ProcessCache("decoded images", capacity=4)


def fingerprint(files: list[Path], *extra: object) -> str:
    digest = hashlib.sha256(repr((CACHE_FORMAT, *extra)).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_folder(root: Path, cache_dir: str | None) -> Path:
    """`cache_dir`, else `<root>/.resnet_lab_cache`, else (read-only data) the user cache."""
    if cache_dir:
        return Path(cache_dir)
    beside = root / ".resnet_lab_cache"
    if os.access(root, os.W_OK) or os.access(beside, os.W_OK):
        return beside
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet_lab"
    log.warning("data.root=%s is not writable; caching decoded images in %s", root, fallback)
    return fallback


def load_or_decode(folder: Path, name: str, key: str, decode: Callable[[], Decoded]) -> Decoded:
    """Memo, then disk, then `decode()` (whose result is written atomically for next time)."""
    path = folder / f"{name}-{key}.pt"
    memo = DECODED.get(str(path))
    if memo is not None:
        return memo
    decoded = _read(path)
    if decoded is None:
        decoded = decode()
        try:
            with atomic_write(path) as handle:
                torch.save({"images": decoded[0], "labels": decoded[1]}, handle)
        except OSError as error:
            log.warning("could not write the data cache %s (%s); decoding again next run", path, error)
    return DECODED.put(str(path), decoded)


def _read(path: Path) -> Decoded | None:
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = entry["images"], entry["labels"]
        if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape[0] != images.shape[0]:
            raise ValueError("unexpected tensor shapes or dtype")
        return images, labels
    except Exception as error:
        log.warning("data cache %s is damaged (%s); rebuilding it", path, error)
        return None
