"""Where a process runs when several share a machine (jobs of a parallel launcher such as
joblib, or the ranks of a ddp run): one GPU each, round-robin over the visible GPUs, and an
equal share of the CPU threads."""

from __future__ import annotations

import os

import torch


def parallel_slot() -> tuple[int, int] | None:
    """(job number, jobs running at once), or None for a lone job."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    n_jobs = hydra_cfg.launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or n_jobs == 1:
        return None
    return int(hydra_cfg.job.num), n_jobs if n_jobs > 0 else os.cpu_count() or 1


def pin(device: torch.device, slot: int, slots: int) -> torch.device:
    """The device and CPU threads of process `slot` of `slots` on this machine."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, slots)))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", slot % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def place_job(device: torch.device) -> torch.device:
    """Pins a parallel job's GPU and CPU threads; a lone job keeps the device it was given."""
    slot = parallel_slot()
    return device if slot is None else pin(device, *slot)
