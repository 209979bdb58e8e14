"""Multi-process data-parallel training under torchrun (`trainer.strategy=ddp`): the strategy
check, and the few collectives the trainer needs (summing epoch metrics, agreeing on a stop).
Joining the group around the Hydra app is resnet_lab.train.torchrun's job."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from resnet_lab.config.schema import Strategy
from resnet_lab.errors import ConfigError
from resnet_lab.train.placement import pin
from resnet_lab.train.torchrun import World, world


def check_strategy(strategy: Strategy, batch_size: int, eval_batch_size: int, drop_last: bool, auto_lr: bool) -> World | None:
    """The strategy must match how the job was started; returns this process's place in the
    group (None: a single-process job)."""
    current = world()
    if strategy == Strategy.ddp:
        if not current.launched:
            raise ConfigError("trainer.strategy='ddp' needs torchrun: torchrun --standalone --nproc_per_node=<N> -m resnet_lab.train trainer.strategy=ddp ...")
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
            if value % current.size:
                raise ConfigError(
                    f"{key}={value} is not allowed with {current.size} ddp processes: the global batch must divide evenly (a multiple of {current.size})"
                )
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
