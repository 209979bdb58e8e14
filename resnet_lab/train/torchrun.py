"""torchrun's process group around a Hydra app.

torchrun starts one process per GPU (or per CPU slot with gloo) and describes the group in
environment variables. Every rank composes the same Hydra config; this module makes them agree
on one run directory before Hydra writes (rank 0's, given to the others by `RankZeroRunDir`)
and keeps Hydra's own files (.hydra/, train.log) to rank 0. torch is imported only under torchrun, so a
plain start answers --help and config errors without it.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

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
        if not current.is_main:
            argv.extend(NON_ZERO_RANK_OVERRIDES)
            logging.getLogger().setLevel(logging.WARNING)
        yield
        # Every rank waits for the slowest before the group is torn down: a rank that destroys
        # gloo's connections while another still ends its run can abort at exit. Skipped when
        # the app failed, since the other ranks may never reach it (torchrun stops them).
        dist.barrier()
    finally:
        dist.destroy_process_group()


class RankZeroRunDir(Callback):
    """Under torchrun every rank composes its own config, and `${now:...}` in the run folder's
    name may read another second on each: before any rank writes, rank 0's run folder is given
    to the others over the process group. Listed first in `hydra.callbacks`."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        if not world().launched:
            return
        import torch
        import torch.distributed as dist

        folder = [str(config.hydra.run.dir) if world().is_main else None]
        dist.broadcast_object_list(folder, src=0, device=torch.device("cpu"))
        with read_write(config.hydra.run):
            config.hydra.run.dir = folder[0]
