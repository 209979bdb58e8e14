"""Folders that runs, sweeps and commands write into: never a finished run, never a system
folder, never a folder of someone else's files, and one process at a time.

A finished run is the only copy of its checkpoints and metrics; a second run that lands in its
folder (a forgotten `trainer.resume=true`, a copied `hydra.run.dir`) would silently replace them.
The checks here run before Hydra writes a single file (`RunFolderGuard`, a Hydra callback), and the
same rules serve `--out` of evaluate / predict / explain (`claim_output_folder`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from resnet_lab.errors import ConfigError, Reported
from resnet_lab.study_storage import study_url

LOCK_FILE = ".resnet_lab.lock"
# What a run leaves that another run must not replace (checkpoints/ is judged by its .pt files).
FINISHED_OUTPUTS = ("summary.json", "metrics.csv", "lr_finder.json", "evaluation.json", "predictions.csv")
# The operating system's own folders: a run never writes into them or below them.
SYSTEM_FOLDERS = tuple(
    Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr", "/var")
)
_held: dict[Path, IO[str]] = {}  # run folders this process holds, with their open lock files


def refuse_unusable(folder: Path, setting: str) -> None:
    """Refuse a file-system root, the home folder, a system folder, or a file, as the place a run,
    a sweep or a command writes into (`setting` names where it was given, e.g. "--out ")."""
    home = Path.home().resolve()
    system = next((s for s in SYSTEM_FOLDERS if folder == s or folder.is_relative_to(s)), None)
    problem = (
        "is the root of a file system"
        if folder.parent == folder
        else "is your home folder"
        if folder == home
        else f"is a system folder ({system})"
        if system is not None
        else None
    )
    if problem:
        raise ConfigError(f"{setting}{folder} {problem}; choose a folder of your own")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{setting}{folder} is a file, not a folder; choose another")


def remove_empty_folders(folder: Path, stop: Path) -> None:
    """`folder` and its parents, as long as each is empty and below `stop`: what a refused start
    created, and nothing else."""
    for candidate in (folder, *folder.parents):
        if candidate == stop or not candidate.is_relative_to(stop):
            break
        if not candidate.exists():
            continue  # already gone: its parents may still be empty
        if not candidate.is_dir() or any(candidate.iterdir()):
            break
        candidate.rmdir()


def finished_outputs(folder: Path) -> list[str]:
    """The outputs of a finished (or interrupted) run that `folder` holds, by name."""
    found = [name for name in FINISHED_OUTPUTS if (folder / name).is_file()]
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        found += [f"checkpoints/{p.name}" for p in sorted(checkpoints.glob("*.pt"))]
    return found


def is_run_folder(folder: Path) -> bool:
    """A folder a resnet_lab run (or a refused start of one) made: Hydra's .hydra/ or our lock."""
    return (folder / ".hydra").is_dir() or (folder / LOCK_FILE).is_file()


def unrelated(folder: Path) -> bool:
    """`folder` exists, holds files, and no resnet_lab run made it."""
    return folder.is_dir() and any(folder.iterdir()) and not is_run_folder(folder)


def check_run_folder(folder: Path, key: str, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, a run folder that is a system folder, holds unrelated
    files, or holds a finished run that this run does not continue (`resume`) or replace
    (`overwrite`)."""
    refuse_unusable(folder, f"{key}=")
    if unrelated(folder):
        raise ConfigError(f"{key}={folder} already holds files that are not a resnet_lab run; choose an empty or new folder")
    if resume or overwrite:
        return
    outputs = finished_outputs(folder)
    if outputs:
        raise ConfigError(
            f"{key}={folder} holds a finished run ({', '.join(outputs[:4])}); continue it with trainer.resume=true, "
            f"write this run elsewhere with another {key}, or replace that run with trainer.overwrite=true"
        )


def clear_outputs(folder: Path) -> None:
    """What `trainer.overwrite=true` replaces: the earlier run's results, so that none of them is
    mistaken for the new run's."""
    for name in FINISHED_OUTPUTS:
        (folder / name).unlink(missing_ok=True)
    for name in ("checkpoints", ".hydra", "wandb"):
        shutil.rmtree(folder / name, ignore_errors=True)


def hold(folder: Path) -> None:
    """Take `folder` for this process (an OS lock on its lock file, released when the process
    ends, kill -9 included); a folder another live process holds is refused with its pid."""
    folder = folder.absolute()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise ConfigError(f"{folder} is in use by another process (pid {holder}); wait for it to end, or choose another hydra.run.dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held[folder] = handle


def release(folder: Path) -> None:
    handle = _held.pop(folder.absolute(), None)
    if handle is not None:
        handle.close()  # closing the file drops the lock


@contextmanager
def held(folder: Path) -> Iterator[None]:
    """`folder` held for the block, unless this process held it already (then it stays held)."""
    already = folder.absolute() in _held
    hold(folder)
    try:
        yield
    finally:
        if not already:
            release(folder)


def discard_untouched(folder: Path, log_name: str, stop: Path) -> None:
    """A refused run leaves nothing behind: Hydra's .hydra/ and log, our lock and an empty
    checkpoints/ go, then the folder and any parents left empty (up to `stop`)."""
    if not folder.is_dir():
        return
    made = {".hydra", log_name, LOCK_FILE, "checkpoints"}
    if {p.name for p in folder.iterdir()} - made or any((folder / "checkpoints").glob("*")):
        return
    release(folder)
    shutil.rmtree(folder)
    remove_empty_folders(folder.parent, stop)


def claim_output_folder(folder: Path, flag: str = "--out") -> Path:
    """The folder a command writes its results into, checked and created before any work: not a
    file, not a system folder, not a folder that already holds files, and writable. Returns it
    absolute; `discard_if_empty` removes it again when the command fails."""
    folder = folder.expanduser().absolute()
    refuse_unusable(folder, f"{flag} ")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{flag} {folder} already holds files; give a new or empty folder so that nothing there is replaced")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{flag} {folder} cannot be written ({error.strerror or error}); choose another folder") from None
    return folder


def discard_if_empty(folder: Path) -> None:
    """Undo `claim_output_folder` when the command wrote nothing."""
    try:
        folder.rmdir()
    except OSError:
        pass


def _setting(config: DictConfig, key: str) -> Any:
    """A setting of the composed config read before validation (None when absent)."""
    try:
        return OmegaConf.select(config, key, default=None)
    except Exception:  # noqa: BLE001 - validation reports a bad value in one line later
        return None


SWEEP_MARKERS = ("multirun.yaml", "study.json", "lr_finder")


class RunFolderGuard(Callback):
    """Checks a run's or a sweep's folder before Hydra writes into it (Hydra saves .hydra/ and
    opens the log only after `on_run_start` / `on_multirun_start`). Listed first in
    `hydra.callbacks`, so a refusal leaves nothing behind."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._check_run(config)
        except ConfigError as error:
            raise Reported(error) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._check_sweep(config)
        except ConfigError as error:
            raise Reported(error) from None

    @staticmethod
    def _check_run(config: DictConfig) -> None:
        if int(os.environ.get("RANK", "0")) != 0:
            return  # torchrun's other ranks write nothing of their own
        search = _setting(config, "hparams_search")
        if search is not None:
            raise ConfigError("hparams_search selects an Optuna sweep, which runs with -m: python -m resnet_lab.train -m hparams_search=... [overrides]")
        folder = Path(str(config.hydra.run.dir)).absolute()
        resume, overwrite = bool(_setting(config, "trainer.resume")), bool(_setting(config, "trainer.overwrite"))
        check_run_folder(folder, "hydra.run.dir", resume, overwrite)
        hold(folder)
        if overwrite and not resume:
            clear_outputs(folder)

    @staticmethod
    def _check_sweep(config: DictConfig) -> None:
        folder = Path(str(config.hydra.sweep.dir)).absolute()
        refuse_unusable(folder, "hydra.sweep.dir=")
        if not folder.is_dir() or not any(folder.iterdir()):
            return  # new, or just claimed by `${resnet_lab_claim:}` (sweep/callbacks.py)
        if not any((folder / marker).exists() for marker in SWEEP_MARKERS):
            raise ConfigError(f"hydra.sweep.dir={folder} already holds files that are not a sweep; choose an empty or new folder")
        study_file = folder / "study.json"
        if not study_file.is_file() or "study_name" not in config.hydra.sweeper:
            raise ConfigError(f"hydra.sweep.dir={folder} holds an earlier multirun, whose job folders this one would replace; choose another hydra.sweep.dir")
        try:
            recorded = json.loads(study_file.read_text())
        except (OSError, ValueError):
            recorded = {}
        stored, stored_url = recorded.get("study_name"), recorded.get("storage")
        wanted, wanted_url = _setting(config, "hydra.sweeper.study_name"), study_url(_setting(config, "hydra.sweeper.storage"))
        if stored != wanted:
            raise ConfigError(
                f"hydra.sweep.dir={folder} holds the trials of study {stored!r}, which study {wanted!r} would replace; continue it with "
                f"hydra.sweeper.study_name={stored}, or choose another hydra.sweep.dir"
            )
        if stored_url is None:
            raise ConfigError(
                f"hydra.sweep.dir={folder} holds the trials of an in-memory study, which ended with its process and cannot be continued; "
                "choose another hydra.sweep.dir (a study to continue later needs hydra.sweeper.storage)"
            )
        if stored_url != wanted_url:
            raise ConfigError(
                f"hydra.sweep.dir={folder} holds the trials of study {stored!r} stored in {stored_url}; a study of that name in "
                f"{wanted_url or 'memory'} would replace them: continue it with hydra.sweeper.storage={stored_url}, or choose another hydra.sweep.dir"
            )
