"""Multi-process data-parallel training under torchrun (`trainer.strategy=ddp`).

torchrun starts one process per GPU (or per CPU slot with gloo) and describes the group in
environment variables. Every rank composes the same Hydra config; this module makes them agree
on one run directory before Hydra starts (rank 0's clock stamps `${now:...}` for all), keeps
Hydra's own files (.hydra/, train.log) to rank 0, and offers the few collectives the trainer
needs: summing epoch metrics and agreeing on a stop.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

import torch
import torch.distributed as dist

from resnet_lab.config.errors import ConfigError
from resnet_lab.config.schema import Strategy
from resnet_lab.train.placement import pin

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
        print("error: torchrun starts one training run over several processes; -m/--multirun is not allowed under torchrun "
              "(run a sweep with the joblib, submitit or ray launcher instead)", file=sys.stderr)
        sys.exit(2)
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
    time, shared through torchrun's store, replaces the clock so every rank gets one directory."""
    from omegaconf import OmegaConf
    import hydra.core.utils  # noqa: F401  (registers Hydra's own `now`, replaced below)

    store = dist.distributed_c10d._get_default_store()
    if current.is_main:
        store.set(START_KEY, datetime.now().isoformat())
    started = datetime.fromisoformat(store.get(START_KEY).decode())
    OmegaConf.register_new_resolver("now", lambda pattern: started.strftime(pattern), use_cache=True, replace=True)


def check_strategy(strategy: Strategy, batch_size: int, eval_batch_size: int, drop_last: bool, auto_lr: bool) -> World | None:
    """The strategy must match how the job was started; returns this process's place in the
    group (None: a single-process job)."""
    current = world()
    if strategy == Strategy.ddp:
        if not current.launched:
            raise ConfigError(
                "trainer.strategy='ddp' needs torchrun: torchrun --standalone --nproc_per_node=<N> -m resnet_lab.train trainer.strategy=ddp ..."
            )
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
            if value % current.size:
                raise ConfigError(f"{key}={value} is not allowed with {current.size} ddp processes: the global batch must divide evenly (a multiple of {current.size})")
        if not drop_last:
            raise ConfigError("data.drop_last=false is not allowed with trainer.strategy=ddp: every rank must train the same number of full batches")
        if auto_lr:
            raise ConfigError(
                "scheduler.max_lr=auto is not allowed with trainer.strategy=ddp without lr_finder.file: run python -m resnet_lab.lr_find "
                "first and pass lr_finder.file=<its lr_finder.json> (or scheduler.max_lr=<value>)"
            )
        return current
    if current.size > 1:
        raise ConfigError(f"torchrun started {current.size} processes but trainer.strategy='single'; add trainer.strategy=ddp")
    return None


def ddp_device(device: torch.device, current: World) -> torch.device:
    """One GPU per rank (torchrun's LOCAL_RANK) and a share of this machine's CPU threads."""
    return pin(device, current.local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", current.size)))


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sums tensors over all ranks in one collective (a no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    stacked = torch.stack([v.to(torch.float64) for v in values])
    dist.all_reduce(stacked)
    return [s.to(v.dtype) for s, v in zip(stacked, values)]


def all_min(value: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (stop requests reach ranks at different steps)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor(int(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every rank, so evaluation and checkpoints agree."""
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
