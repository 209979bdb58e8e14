"""Where a process runs when several share a machine (jobs of a parallel launcher such as
joblib, or the ranks of a ddp run): one GPU each, round-robin over the visible GPUs, and an
equal share of the CPU threads."""

from __future__ import annotations

import os

import torch


def pin(device: torch.device, slot: int, slots: int) -> torch.device:
    """The device and CPU threads of process `slot` of `slots` on this machine."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, slots)))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", slot % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def place_job(device: torch.device, slot: tuple[int, int] | None) -> torch.device:
    """Pins a parallel job's GPU and CPU threads (`slot`: job number, jobs at once); a lone
    job (None) keeps the device it was given."""
    return device if slot is None else pin(device, *slot)
