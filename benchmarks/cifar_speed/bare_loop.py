"""The framework's cost per epoch against the shortest loop doing the same work."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.cifar_speed.common import (
    Scale,
    compose_run,
    peak_memory,
    reset_peak,
    timed,
)
from resnet_lab.config import validate


def run_bare(root: Path, scale: Scale) -> dict[str, Any]:
    """The framework's cost per epoch: the same model (compiled the same way), fused SGD,
    one-cycle schedule and GPU tensors, trained by the shortest loop that does the same work."""
    from resnet_lab.train.run import build_trainer

    cfg = compose_run(root, scale, f"trainer.epochs={scale.bare_epochs}")
    framework, _, _ = build_trainer(validate(cfg))
    framework.fit(scale.bare_epochs)
    framework_epoch_s = statistics.median(m.epoch_time_s for m in framework.history[1:] or framework.history)

    trainer, _, _ = build_trainer(validate(cfg))  # fresh weights, optimizer and schedule: only its parts are used
    model, optimizer, scheduler, loader = trainer.train_model, trainer.optimizer, trainer.scheduler, trainer.train_loader
    images, labels, device = loader.images, loader.labels, loader.device
    mean, inv_std, augment, generator, batch = loader.mean, loader.inv_std, loader.augment, loader.generator, loader.batch_size
    memory_format = loader.memory_format
    dtype = torch.bfloat16 if trainer.precision == "bf16" else None
    smoothing = cfg.trainer.label_smoothing
    steps = len(labels) // batch
    cuda_graphs = trainer.cuda_graphs

    def epoch() -> None:
        model.train()
        order = torch.randperm(len(labels), device=device, generator=generator)
        for step in range(steps):
            if cuda_graphs:  # a new step: the graphs may overwrite the last step's outputs
                torch.compiler.cudagraph_mark_step_begin()
            index = order[step * batch : (step + 1) * batch]
            x = (images[index].float() - mean) * inv_std
            if augment is not None:
                x = augment(x, generator)
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), labels[index], label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    reset_peak(device)
    times = [timed(device, epoch)[1] for _ in range(scale.bare_epochs)]
    bare_epoch_s = statistics.median(times[1:] or times)
    return {
        "bare_epoch_s": bare_epoch_s,
        "framework_epoch_s": framework_epoch_s,
        "ratio": framework_epoch_s / bare_epoch_s,
        "peak_memory_gib": peak_memory(device),
    }
