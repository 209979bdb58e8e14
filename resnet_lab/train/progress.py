"""How long a run takes, told while it runs. On a machine without CUDA the default recipe takes
hours, which a user should learn in the first minute, not the last: after a few timed steps, one
line gives the whole run's estimate and the recipe that is sized for a CPU. And where no progress
bar shows, a line at least every 30 s says how far the run has come."""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger(__name__)

QUICK_RECIPE = "experiment=quick is sized for a CPU (README: the first run)"
LONG_S = 20 * 60  # beyond this, name the quick recipe


def duration(seconds: float) -> str:
    if seconds < 59.5:
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


class CpuEstimate:
    """A step hook of the trainer: times the steps after the first `skip` (which pay for
    allocation and kernel selection) and logs the estimate once, after `timed` of them or after
    `within_s` seconds, whichever comes first (a slow step must not delay the news for minutes).
    CPU only, where timing a step costs no device sync."""

    def __init__(
        self,
        total_steps: int,
        why: str,
        skip: int = 2,
        timed: int = 5,
        within_s: float = 20.0,
        clock: Callable[[], float] = time.perf_counter,
        suggest_quick: bool = True,
    ) -> None:
        self.total_steps, self.why, self.skip, self.timed, self.within_s, self.clock = total_steps, why, skip, timed, within_s, clock
        self.suggest_quick = suggest_quick  # off when the run already is the quick recipe
        self.steps = 0
        self.started = 0.0
        self.done = False

    def __call__(self) -> None:
        self.steps += 1
        if self.done or self.steps < self.skip:
            return
        if self.steps == self.skip:
            self.started = self.clock()
            return
        elapsed = self.clock() - self.started
        timed = self.steps - self.skip
        if timed < self.timed and elapsed < self.within_s:
            return
        self.done = True
        per_step = elapsed / timed
        total = per_step * self.total_steps
        log.warning(
            "%s: training on the CPU at %.2f s per step; the whole run (%d steps) takes about %s%s",
            self.why,
            per_step,
            self.total_steps,
            duration(total),
            f". {QUICK_RECIPE}" if total > LONG_S and self.suggest_quick else "",
        )


class ProgressLog:
    """A step hook for output that is not a terminal (a log file, a job scheduler), where no
    progress bar shows: one line at least every `every_s` seconds with the steps done and the
    time left. It reads only the host's clock, never the device."""

    def __init__(self, total_steps: int, every_s: float = 30.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total_steps, self.every_s, self.clock = total_steps, every_s, clock
        self.steps = 0
        self.started = self.last = clock()

    def __call__(self) -> None:
        self.steps += 1
        now = self.clock()
        if now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        left = elapsed / self.steps * (self.total_steps - self.steps)
        log.info(
            "progress: step %d of %d (%.0f%%), %s elapsed, about %s left",
            self.steps,
            self.total_steps,
            100 * self.steps / self.total_steps,
            duration(elapsed),
            duration(left),
        )
