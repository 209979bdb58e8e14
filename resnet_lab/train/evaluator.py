"""Scoring a model on a split, as the training loop does at the end of an epoch: the run's
precision, its compiled form, test-time augmentation. Shared by the loop and by the commands
that score a saved run, which need no optimizer or schedule for it."""

from __future__ import annotations

from typing import ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from resnet_lab.augment.tta import tta_logits
from resnet_lab.config.schema import TTAMode
from resnet_lab.data.loader import DeviceLoader
from resnet_lab.train.compiled import uses_cuda_graphs
from resnet_lab.train.distributed import all_sum
from resnet_lab.train.environment import autocast


class Evaluator:
    """`model` is the plain module (whose weights are scored); `eval_model` what runs it, the
    compiled form when there is one."""

    def __init__(
        self, model: nn.Module, eval_model: nn.Module, device: torch.device, precision: str, compile_mode: str | None, eval_loader: DeviceLoader, tta: TTAMode
    ) -> None:
        self.model, self.eval_model, self.device, self.precision = model, eval_model, device, precision
        self.cuda_graphs = uses_cuda_graphs(compile_mode)
        self.eval_loader = eval_loader
        self.tta = TTAMode(tta)

    def autocast(self) -> ContextManager:
        return autocast(self.precision, self.device)

    @torch.no_grad()
    def evaluate(self, loader: DeviceLoader | None = None, tta: TTAMode = TTAMode.none) -> tuple[float, float]:
        """Returns (mean loss, accuracy) on the evaluation split (plain cross-entropy), with the
        logits averaged over the views of `tta`."""
        loader = loader or self.eval_loader
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for logits, labels in self.predictions(loader, tta):
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
        if loader.world > 1:
            loss_sum, correct = all_sum(loss_sum, correct)
        loss_total, correct_total = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
        return loss_total / loader.num_samples, correct_total / loader.num_samples

    @torch.no_grad()
    def predictions(self, loader: DeviceLoader, tta: TTAMode = TTAMode.none) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, labels) batch by batch, as evaluation computes them: the evaluated weights,
        the run's precision, the logits averaged over the views of `tta`."""
        self.model.eval()
        for images, labels in loader:
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast():
                logits = tta_logits(self.eval_model, images, tta)
            yield logits, labels
