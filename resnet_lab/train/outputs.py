"""The run directory's human-readable files: metrics.csv, summary.json, curves.png."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from resnet_lab.files import atomic_write
from resnet_lab.plotting import pyplot
from resnet_lab.train.loop import EpochMetrics


def write_metrics_csv(path: Path, history: list[EpochMetrics]) -> None:
    """Rewritten whole each epoch (it is tiny), so a resumed run's file never has stale rows."""
    buffer = io.StringIO()
    fields = list(EpochMetrics.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for metrics in history:
        writer.writerow(metrics.as_row())
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def plot_curves(path: Path, history: list[EpochMetrics], eval_name: str) -> None:
    plt = pyplot()

    epochs = [m.epoch for m in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [m.train_loss for m in history], marker="o", label="train")
    loss_axis.plot(epochs, [m.eval_loss for m in history], marker="o", label=eval_name)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axis.plot(epochs, [100 * m.train_acc for m in history], marker="o", label="train")
    acc_axis.plot(epochs, [100 * m.eval_acc for m in history], marker="o", label=eval_name)
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
