"""Checkpoints: atomic writes, and loads that can never run code from the file.

Runs are shared (a colleague's run directory, a W&B model artifact, a file in a bug report), and
unpickling an arbitrary object runs code. A checkpoint is therefore read with
`torch.load(weights_only=True)`: tensors, plain containers and numbers only, plus the config enums
that checkpoints written before configs were saved as plain strings carry (constructing an enum
member runs nothing). Anything else is refused in one line before any of it is built.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_lab.config import RunConfig, schema
from resnet_lab.errors import ConfigError, DataError, UnsafeCheckpointError
from resnet_lab.files import atomic_write

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
_CONFIG_ENUMS = [value for value in vars(schema).values() if isinstance(value, type) and issubclass(value, Enum) and value.__module__ == schema.__name__]
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(path: Path, state: dict) -> None:
    # Serialised in memory first: a full disk then fails in our own write, as an OSError that
    # names the file, rather than inside torch's zip writer as an opaque RuntimeError.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(path) as handle:
        handle.write(buffer.getbuffer())


def resolve_checkpoint(location: str | Path) -> Path:
    """The checkpoint a location means: a .pt file itself; a run directory's checkpoints/last.pt;
    the one checkpoint in a downloaded W&B model artifact folder (`wandb artifact get` writes
    best.pt there); or, for a W&B run directory (<run dir>/wandb/<run>), its run's last.pt."""
    path = Path(location).expanduser()
    if path.is_file():
        return path
    if (path / "checkpoints" / LAST).is_file():
        return path / "checkpoints" / LAST
    loose = sorted(path.glob("*.pt")) if path.is_dir() else []
    if len(loose) == 1:
        return loose[0]
    if any(path.glob("run-*.wandb")) and (path.parent.parent / "checkpoints" / LAST).is_file():
        return path.parent.parent / "checkpoints" / LAST
    if len(loose) > 1:
        raise DataError(f"{path} holds several checkpoints ({', '.join(p.name for p in loose)}); pass the .pt file meant")
    raise DataError(
        f"no checkpoint at {path}; pass a run directory with checkpoints/{LAST}, a .pt file, or a W&B model artifact folder "
        "(wandb artifact get <entity>/<project>/best-checkpoint:<version>)"
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.pt), or the folder holding
    it when it lies elsewhere (a W&B artifact folder, a file someone sent)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is not a regular file; pass a checkpoint .pt file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive (older versions a bare pickle, protocol 2+): anything else
    # is not a checkpoint at all, whatever weights_only would make of it.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise DataError(f"{path} is not a PyTorch checkpoint (a file written by torch.save); pass a run directory or its checkpoints/last.pt")
    try:
        with torch.serialization.safe_globals(_CONFIG_ENUMS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _GLOBAL.search(str(error))
        if found is None and "Weights only load failed" not in str(error):
            raise _damaged(path, error) from error
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds {found.group(1) if found else 'Python objects'}, not only tensors and plain "
            "values, and unpickling it could run code; resnet_lab checkpoints never hold such objects, so this file was not "
            "written by resnet_lab or was altered"
        ) from None
    except Exception as error:
        raise _damaged(path, error) from error
    _check_layout(path, state)
    state["config"] = plain(state.get("config", {}))
    return state


def _check_layout(path: Path, state: Any) -> None:
    """A loaded checkpoint has the shape resnet_lab writes, and finite weights: a crafted or
    damaged file is refused here, in one line, rather than failing deep inside a command."""
    trainer = state.get("trainer") if isinstance(state, dict) else None
    weights = trainer.get("model") if isinstance(trainer, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise DataError(f"checkpoint {path} is not a resnet_lab checkpoint (no model weights in its trainer state)")
    if not isinstance(state.get("config", {}), dict):
        raise DataError(f"checkpoint {path} is not a resnet_lab checkpoint (its config is a {type(state['config']).__name__}, not a mapping)")
    classes = state.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise DataError(f"checkpoint {path} is not a resnet_lab checkpoint (its classes are not a list of names)")
    broken = next((name for name, tensor in weights.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)
    if broken is not None:
        raise DataError(f"checkpoint {path} holds NaN or infinite weights ({broken}): the run it came from diverged; use an earlier checkpoint (best.pt)")


def plain(value: Any) -> Any:
    """A config with enum members as their names: what checkpoints save today."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _damaged(path: Path, error: BaseException) -> DataError:
    return DataError(
        f"checkpoint {path} is damaged or not a checkpoint ({type(error).__name__}: {error}); trainer.resume_fallback_best=true resumes from best.pt instead"
    )


def checkpoint_bytes(model: nn.Module) -> int:
    """A checkpoint holds the weights plus optimizer state (up to two tensors per weight)."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters())


def run_footprint_bytes(model: nn.Module, tracked: bool, explained: bool) -> int:
    """What the run writes at its peak: last.pt, best.pt and the temporary copy an atomic write
    makes of one of them, a fourth copy staged by W&B as the model artifact; plus metrics, logs
    and curves (1 MiB) and the GradCAM gallery and confusion matrix (2 MiB)."""
    copies = 3 + (1 if tracked else 0)
    return copies * checkpoint_bytes(model) + 2**20 + (2 * 2**20 if explained else 0)


RESUME_GROUPS = ("model", "data", "augmentation", "optimizer", "scheduler")


def load_resume(run: RunConfig, resolved: dict, run_dir: Path) -> tuple[Path, dict] | None:
    """The checkpoint this run continues from (resume_from or trainer.resume), loaded safely and
    checked to belong to the same run (`resolved`: this run's config as plain values); None for
    a fresh run."""
    if run.resume_from is not None:
        path = resolve_checkpoint(run.resume_from)
    elif run.trainer.resume:
        path = run_dir / "checkpoints" / LAST
        if not path.is_file():
            raise ConfigError(
                f"trainer.resume=true but {path} does not exist; run in the original directory (hydra.run.dir=<run_dir>) or pass resume_from=<run_dir>"
            )
    else:
        return None
    try:
        state = load_checkpoint(path)
    except UnsafeCheckpointError:
        raise
    except DataError:
        fallback = path.parent / BEST
        if not (run.trainer.resume_fallback_best and fallback.is_file() and fallback != path):
            raise
        log.warning("%s is damaged; resuming from %s as trainer.resume_fallback_best=true asks", path, fallback)
        path, state = fallback, load_checkpoint(fallback)
    _check_same_run(resolved, state["config"], path)
    return path, state


def _check_same_run(current: dict, saved: dict, path: Path) -> None:
    """A checkpoint continues only the run it came from: the schedule, data and model must match."""
    differing = [
        f"{group}.{key}"
        for group in RESUME_GROUPS
        for key in sorted(set(current.get(group, {})) | set(saved.get(group, {})))
        if current.get(group, {}).get(key) != saved.get(group, {}).get(key)
    ]
    if current["trainer"]["epochs"] != saved.get("trainer", {}).get("epochs"):
        differing.append("trainer.epochs")
    if differing:
        raise ConfigError(
            f"cannot resume from {path}: {', '.join(differing)} differ from the checkpoint's run; resume with its settings, "
            "or start a new run (resume_from continues the same run only)"
        )
