"""Where a job runs when a parallel launcher (joblib) runs several jobs of a multirun at once:
one GPU each, round-robin over the visible GPUs, and an equal share of the CPU threads."""

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


def place_job(device: torch.device) -> torch.device:
    """Pins a parallel job's GPU and CPU threads; a lone job keeps the device it was given."""
    slot = parallel_slot()
    if slot is None:
        return device
    number, jobs = slot
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", number % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device
