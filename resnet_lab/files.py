"""Files written whole or not at all: write to a temporary sibling, fsync, rename over the target,
so a crash or a kill leaves either the old or the new complete file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path`; on success fsync it and rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private, unlike any other
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:
            # A failed write or fsync names no file; the user needs to know which one it was.
            raise OSError(error.errno, error.strerror, str(target)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the OS says (Linux), else set and
    restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")


def check_writable(folder: str | os.PathLike[str], need_bytes: int) -> None:
    """Fail before training, not at the first checkpoint: the folder must take a file and have
    `need_bytes` free."""
    from resnet_lab.errors import ConfigError

    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with atomic_write(target / ".write_test", "w") as handle:
            handle.write("ok")
        (target / ".write_test").unlink()
    except OSError as error:
        raise ConfigError(f"cannot write to the output directory {target} ({error.strerror or error}); choose another with hydra.run.dir=...") from error
    free = shutil.disk_usage(target).free
    if free < need_bytes:
        raise ConfigError(
            f"only {free / 2**20:.1f} MiB free in {target}, the run needs about {need_bytes / 2**20:.1f} MiB "
            "for its checkpoints and outputs; free some space or set hydra.run.dir on another disk"
        )
