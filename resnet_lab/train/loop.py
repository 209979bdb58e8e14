"""The epoch loop. Metrics are summed on the device and read once per epoch: no host sync per
batch, so the GPU never waits on Python between steps."""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, ContextManager, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from resnet_lab.config.schema import TTAMode
from resnet_lab.data.loader import DeviceLoader
from resnet_lab.errors import DivergedError
from resnet_lab.optim.group_spec import GroupSpec
from resnet_lab.train.components import Components
from resnet_lab.train.distributed import all_min, all_sum, any_rank, broadcast_buffers
from resnet_lab.train.ema import WeightAverage
from resnet_lab.train.environment import autocast
from resnet_lab.train.evaluator import Evaluator


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived: the step in flight finished and the state was saved. A
    KeyboardInterrupt, so that Hydra stops a sweep rather than recording a failed trial."""

    def __init__(self, exit_code: int, where: str) -> None:
        super().__init__(where)
        self.exit_code = exit_code
        self.where = where


@dataclass
class EpochProgress:
    """A partly trained epoch: what an interrupt saves and a resume continues from, so that the
    resumed run draws the same batches and augmentations as an uninterrupted one."""

    epoch: int
    order: torch.Tensor | None
    next_batch: int
    loss_sum: torch.Tensor
    correct: torch.Tensor
    first_bad_step: torch.Tensor
    seconds: float = 0.0
    lrs: list[float] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in asdict(self).items()} | {
            "order": None if self.order is None else self.order.cpu()
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> "EpochProgress":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
        return cls(**moved)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    eval_loss: float
    eval_acc: float
    lr: float
    epoch_time_s: float
    images_per_s: float
    tta_acc: float | None = None  # the last epoch's evaluation with trainer.tta (None: no TTA)

    def as_row(self) -> dict[str, float]:
        return asdict(self)

    @property
    def objective(self) -> float:
        """What a sweep maximises, as it stood after this (evaluated) epoch: the accuracy, with
        test-time augmentation when it is on."""
        return self.eval_acc if self.tta_acc is None else self.tta_acc


EpochCallback = Callable[["Trainer", EpochMetrics], None]


@dataclass(frozen=True)
class LoopOptions:
    """How the loop trains and evaluates, beyond the parts it is given (trainer.* settings)."""

    label_smoothing: float = 0.0
    grad_clip: float | None = None
    show_progress: bool = True
    tta: TTAMode = TTAMode.none
    eval_every: int = 1  # evaluate every N epochs and after the last; 0: only after the last
    ema: WeightAverage | None = None  # evaluated in place of the live weights, which it replaces after the last epoch


class Trainer:
    """The epoch loop over a job's parts (model, loaders, device, precision, compiled form)."""

    def __init__(
        self,
        parts: Components,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        options: LoopOptions | None = None,
    ) -> None:
        options = options or LoopOptions()
        model, compiled, compile_mode, device = parts.model, parts.compiled, parts.compile_mode, parts.device
        distributed = parts.world is not None
        self.model = model
        # Steps and evaluation run `compiled` (the model under torch.compile) when given; under
        # ddp, training steps go through the DDP wrapper (compiled as a whole) and evaluation
        # through the plain model. Checkpoints and galleries always use the plain model.
        self.distributed = distributed
        self.train_model: nn.Module = model if compiled is None else compiled
        self.eval_model: nn.Module = self.train_model
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            self.train_model = torch.compile(wrapped, mode=compile_mode, dynamic=False) if compile_mode else wrapped
            self.eval_model = model
        self.compile_mode = compile_mode
        self.evaluator = Evaluator(model, self.eval_model, device, parts.precision, compile_mode, parts.eval_loader, options.tta)
        self.cuda_graphs = self.evaluator.cuda_graphs
        self.tta = self.evaluator.tta
        self.eval_every = options.eval_every
        self.ema = options.ema
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = parts.train_loader
        self.eval_loader = parts.eval_loader
        self.device = device
        self.precision = parts.precision
        self.label_smoothing = options.label_smoothing
        self.grad_clip = options.grad_clip
        self.show_progress = options.show_progress
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.history: list[EpochMetrics] = []
        # Called after every training step; empty unless a caller adds one (the CPU estimate).
        self.step_hooks: list[Callable[[], None]] = []
        self.stop_signal = 0  # set by a signal handler: finish the step in flight, then stop
        self.resume_progress: EpochProgress | None = None
        self.interrupted_progress: EpochProgress | None = None

    def autocast(self) -> ContextManager:
        return autocast(self.precision, self.device)

    def train_epoch(self, epoch: int, epochs: int) -> tuple[float, float, float, float]:
        """Returns (mean loss, accuracy, seconds, LR of the epoch's last step). Continues a
        saved partial epoch when there is one; stops after the step in flight on a signal."""
        self.train_model.train()
        progress = self.resume_progress if self.resume_progress is not None and self.resume_progress.epoch == epoch else None
        self.resume_progress = None
        if progress is None:
            zeros = dict(device=self.device)
            progress = EpochProgress(
                epoch,
                self.train_loader.new_order(),
                0,
                torch.zeros((), **zeros),
                torch.zeros((), dtype=torch.int64, **zeros),
                torch.full((), -1, dtype=torch.int64, **zeros),
            )
        first_group = self.optimizer.param_groups[0]
        first_scale = GroupSpec.of(first_group).lr_scale  # fixed for the run: read once, not per step
        start = time.perf_counter()
        batches = tqdm(
            self.train_loader.batches(progress.order, progress.next_batch),
            desc=f"epoch {epoch}/{epochs}",
            leave=False,
            disable=None if self.show_progress else True,
            initial=progress.next_batch,
            total=len(self.train_loader),
        )
        for index, (images, labels) in enumerate(batches, start=progress.next_batch):
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast():
                logits = self.train_model(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            progress.lrs.append(first_group["lr"] / first_scale)  # in scheduler.max_lr's units
            self.scheduler.step()
            if self.ema is not None and (index + 1) % self.ema.every == 0:
                self.ema.update()
            for hook in self.step_hooks:
                hook()
            loss = loss.detach().float()
            progress.loss_sum += loss * labels.shape[0]
            progress.correct += (logits.argmax(1) == labels).sum()
            progress.first_bad_step = torch.where((progress.first_bad_step < 0) & ~torch.isfinite(loss), index, progress.first_bad_step)
            if self.stop_signal and not self.distributed:  # ddp ranks stop together, at the epoch's end
                progress.next_batch = index + 1
                progress.seconds += time.perf_counter() - start
                self.interrupted_progress = progress
                raise TrainingInterrupted(128 + self.stop_signal, f"epoch {epoch}, after step {index + 1} of {len(self.train_loader)}")
        no_bad_step = 2**31  # larger than any step index
        first_bad = torch.where(progress.first_bad_step < 0, no_bad_step, progress.first_bad_step)
        loss_sum, correct = all_sum(progress.loss_sum, progress.correct)
        loss_total, correct_total, bad_step = torch.stack([loss_sum.double(), correct.double(), all_min(first_bad).double()]).tolist()
        seconds = progress.seconds + time.perf_counter() - start
        n = self.train_loader.num_samples
        if bad_step < no_bad_step or not math.isfinite(loss_total):
            step = int(bad_step)
            where = f"at step {step + 1} of epoch {epoch} (lr {progress.lrs[step]:.4g})" if bad_step < no_bad_step else f"in epoch {epoch}"
            raise DivergedError(f"training loss became nan/inf {where}; lower scheduler.max_lr")
        return loss_total / n, correct_total / n, seconds, progress.lrs[-1]

    def evaluate(self, loader: DeviceLoader | None = None, tta: TTAMode = TTAMode.none) -> tuple[float, float]:
        return self.evaluator.evaluate(loader, tta)

    def fit(self, epochs: int, callbacks: Sequence[EpochCallback] = ()) -> list[EpochMetrics]:
        """Train from the epoch after the last one in `history` (0 on a fresh start) to `epochs`."""
        for epoch in range(len(self.history) + 1, epochs + 1):
            train_loss, train_acc, seconds, lr = self.train_epoch(epoch, epochs)
            eval_loss, eval_acc, tta_acc = math.nan, math.nan, None
            if epoch == epochs or (self.eval_every and epoch % self.eval_every == 0):
                if self.ema is not None:
                    self.ema.swap()
                if self.distributed:
                    broadcast_buffers(self.model)
                eval_loss, eval_acc = self.evaluate()
                if epoch == epochs and self.tta != TTAMode.none:
                    tta_acc = self.evaluate(tta=self.tta)[1]
                if self.ema is not None and epoch < epochs:
                    self.ema.swap()
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                eval_loss=eval_loss,
                eval_acc=eval_acc,
                lr=lr,
                epoch_time_s=seconds,
                images_per_s=self.train_loader.num_samples / seconds,
                tta_acc=tta_acc,
            )
            self.history.append(metrics)
            for callback in callbacks:
                callback(self, metrics)
            stop = any_rank(bool(self.stop_signal), self.device) if self.distributed else bool(self.stop_signal)
            if stop and epoch < epochs:
                raise TrainingInterrupted(128 + (self.stop_signal or signal.SIGTERM), f"the end of epoch {epoch}")
        return self.history

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "history": [m.as_row() for m in self.history],
            "progress": None if self.interrupted_progress is None else self.interrupted_progress.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.train_loader.load_state_dict(state["train_loader"])
        self.history = [EpochMetrics(**row) for row in state["history"]]
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if state.get("progress") is not None:
            self.resume_progress = EpochProgress.from_state(state["progress"], self.device)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
