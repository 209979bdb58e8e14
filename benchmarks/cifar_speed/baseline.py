"""The seed's recipe the seed's way: torchvision DataLoader, CPU transforms, fp32."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from benchmarks.cifar_speed.common import (
    SEED_ACCURACY,
    Scale,
    compose_run,
    peak_memory,
    reset_peak,
    timed,
)
from resnet_lab.config import validate


class _InMemoryImages(torch.utils.data.Dataset):
    """The seed's data path: uint8 images in host memory, each item a PIL image through CPU-side
    torchvision transforms, batched by a multi-worker DataLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images.permute(0, 2, 3, 1).numpy(), labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def run_baseline(root: Path, scale: Scale) -> dict[str, Any]:
    """experiment=seed_replica's recipe (Adam, one-cycle, cutout-free CPU transforms) in fp32
    with a torchvision DataLoader, evaluated each epoch; timed (training only) until the test
    accuracy first reaches the seed's 80.63%, or through its epochs."""
    from torchvision import transforms

    from resnet_lab.config.targets import build_typed
    from resnet_lab.data import load_splits
    from resnet_lab.optim.optimizers import build_optimizer
    from resnet_lab.optim.schedulers import build_scheduler

    cfg = compose_run(root, scale, "experiment=seed_replica", f"trainer.epochs={scale.baseline_epochs}")
    run = validate(cfg)
    splits = load_splits(run.data, root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    normalise = transforms.Normalize(list(cfg.data.mean), list(cfg.data.std))
    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), normalise])
    workers = min(8, os.cpu_count() or 1)
    loader_options = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    train = torch.utils.data.DataLoader(
        _InMemoryImages(splits.train_images, splits.train_labels, train_tf), batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, **loader_options
    )
    test = torch.utils.data.DataLoader(_InMemoryImages(splits.eval_images, splits.eval_labels, test_tf), batch_size=cfg.data.eval_batch_size, **loader_options)
    torch.manual_seed(0)
    model = build_typed(run.model, num_classes=splits.num_classes).to(device)
    optimizer = build_optimizer(run.optimizer, model, lr=float(cfg.scheduler.max_lr), batch_size=cfg.data.batch_size)
    scheduler = build_scheduler(run.scheduler, optimizer, steps_per_epoch=len(train), epochs=scale.baseline_epochs, max_lr=float(cfg.scheduler.max_lr))
    reset_peak(device)
    training_s, reached_at, history = 0.0, None, []
    for epoch in range(1, scale.baseline_epochs + 1):

        def train_epoch() -> None:
            model.train()
            for images, labels in train:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.trainer.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()

        _, seconds = timed(device, train_epoch)
        training_s += seconds
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test:
                correct += int((model(images.to(device)).argmax(1).cpu() == labels).sum())
        accuracy = correct / len(splits.eval_labels)
        history.append({"epoch": epoch, "accuracy": accuracy, "epoch_s": seconds})
        print(f"baseline epoch {epoch}: {100 * accuracy:.2f}% ({seconds:.1f} s)", flush=True)
        if reached_at is None and accuracy >= SEED_ACCURACY:
            reached_at = {"epoch": epoch, "time_s": training_s}
            break
    return {
        "workers": workers,
        "reached_seed_accuracy": reached_at,
        "time_s": training_s,
        "final_accuracy": history[-1]["accuracy"],
        "epoch_s": statistics.median(h["epoch_s"] for h in history),
        "peak_memory_gib": peak_memory(device),
        "history": history,
    }
