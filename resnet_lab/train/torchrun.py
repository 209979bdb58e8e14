"""torchrun's process group around a Hydra app.

torchrun starts one process per GPU (or per CPU slot with gloo) and describes the group in
environment variables. Every rank composes the same Hydra config; this module makes them agree
on one run directory before Hydra starts (rank 0's clock stamps `${now:...}` for all) and keeps
Hydra's own files (.hydra/, train.log) to rank 0. torch is imported only under torchrun, so a
plain start answers --help and config errors without it.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

START_KEY = "resnet_lab/start"
# Hydra's own outputs are written by rank 0 alone; the other ranks log to their console.
NON_ZERO_RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=stdout")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def launched(self) -> bool:
        """Started by torchrun (even with one process)."""
        return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def world() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


@contextmanager
def process_group(argv: list[str]) -> Iterator[None]:
    """Joins torchrun's process group (when started by torchrun) around a Hydra app, after
    aligning the ranks' run directory; `argv` gains the non-zero ranks' overrides."""
    current = world()
    if not current.launched:
        yield
        return
    if "-m" in argv or "--multirun" in argv:
        print(
            "error: torchrun starts one training run over several processes; -m/--multirun is not allowed under torchrun "
            "(run a sweep with the joblib, submitit or ray launcher instead)",
            file=sys.stderr,
        )
        sys.exit(2)
    import torch
    import torch.distributed as dist

    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        _share_start_time(current)
        if not current.is_main:
            argv.extend(NON_ZERO_RANK_OVERRIDES)
            logging.getLogger().setLevel(logging.WARNING)
        yield
    finally:
        dist.destroy_process_group()


def _share_start_time(current: World) -> None:
    """Hydra stamps run directories with `${now:...}`, read separately by each rank; rank 0's
    time, shared through torchrun's store, replaces the clock so every rank gets one directory.
    Hydra 1.4 registers `now` again at every app start (hydra.core.utils.setup_globals), reading
    that module's `datetime.now()`; so the clock is replaced there, not the resolver."""
    import hydra.core.utils
    import torch.distributed as dist

    store = dist.distributed_c10d._get_default_store()
    if current.is_main:
        store.set(START_KEY, datetime.now().isoformat())
    started = datetime.fromisoformat(store.get(START_KEY).decode())

    class StartedClock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return started

    hydra.core.utils.datetime = StartedClock  # type: ignore[misc]  # replacing the class Hydra reads is the point
