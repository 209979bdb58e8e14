"""The training/evaluation loader: the whole split lives on the training device as uint8.

Per batch it only indexes, converts, normalises and augments there; shuffling uses a seeded
generator on that device, whose state goes into checkpoints so a resumed run sees the same
batches an uninterrupted one would.

Under ddp every rank holds the whole split, draws the same order, and takes its own slice of
each global batch (`rank` of `world`): the ranks together see exactly the batches one process
would, and their generators stay identical, so rank 0's checkpoint resumes them all.
"""

from __future__ import annotations

import copy
import math
from typing import Iterator

import torch

from resnet_lab.augment.batched import Augment, Rows, mirror


class DeviceLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: list[float],
        std: list[float],
        device: torch.device,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
        alternate_flip: bool = False,
    ) -> None:
        self.images = images.to(device, non_blocking=True)
        self.labels = labels.to(device, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and len(labels) >= batch_size
        self.augment = augment
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.rank, self.world = rank, world
        # Alternating flips (airbench): a random half of the images is mirrored in the first
        # epoch, and each image is mirrored in every other epoch after that.
        self.alternate_flip = alternate_flip
        self.epochs_started = 0
        self.flip_first: torch.Tensor | None = None

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch over all ranks."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def unsharded(self) -> "DeviceLoader":
        """The same data and state, all of each batch (rank 0's whole-split views: galleries)."""
        whole = copy.copy(self)
        whole.rank, whole.world = 0, 1
        return whole

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(self.new_order())

    def new_order(self) -> torch.Tensor | None:
        """This epoch's sample order (None: the stored order), drawn from the loader's generator."""
        self.epochs_started += 1
        if self.alternate_flip and self.flip_first is None:
            self.flip_first = torch.rand(len(self.labels), device=self.device, generator=self.generator) < 0.5
        if not self.shuffle:
            return None
        return torch.randperm(len(self.labels), device=self.device, generator=self.generator)

    def batches(self, order: torch.Tensor | None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches `start`, `start + 1`, ... of an epoch in `order` (a resumed epoch starts late)."""
        n = len(self.labels)
        for first in range(start * self.batch_size, len(self) * self.batch_size, self.batch_size):
            total = min(self.batch_size, n - first)
            rows = Rows(total * self.rank // self.world, total * (self.rank + 1) // self.world, total)
            if rows.start == rows.stop:
                continue
            span = slice(first + rows.start, first + rows.stop)
            index = span if order is None else order[span]
            images, labels = self.images[index], self.labels[index]
            batch = (images.float() - self.mean) * self.inv_std
            if self.flip_first is not None:
                batch = mirror(batch, self.flip_first[index] if self.epochs_started % 2 else ~self.flip_first[index])
            if self.augment is not None:
                batch = self.augment(batch, self.generator, rows if self.world > 1 else None)
            yield batch.contiguous(memory_format=self.memory_format), labels

    def state_dict(self) -> dict:
        flips = None if self.flip_first is None else self.flip_first.cpu()
        return {"generator": self.generator.get_state(), "epochs_started": self.epochs_started, "flip_first": flips}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epochs_started = state.get("epochs_started", 0)
        if state.get("flip_first") is not None:
            self.flip_first = state["flip_first"].to(self.device)
