"""On a machine without CUDA the default recipe takes hours, which a user should learn in the
first minute, not the last: after a few timed steps, one line gives the whole run's estimate and
the recipe that is sized for a CPU."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

QUICK_RECIPE = "experiment=quick is sized for a CPU (README, Data)"
LONG_S = 20 * 60  # beyond this, name the quick recipe


def duration(seconds: float) -> str:
    if seconds < 59.5:
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


class CpuEstimate:
    """A step hook of the trainer: times steps `skip`+1 .. `skip`+`timed` (the first steps pay
    for allocation and kernel selection) and logs the estimate once. CPU only, where timing a
    step costs no device sync."""

    def __init__(self, total_steps: int, why: str, skip: int = 2, timed: int = 5) -> None:
        self.total_steps, self.why, self.skip, self.timed = total_steps, why, skip, timed
        self.steps = 0
        self.started = 0.0

    def __call__(self) -> None:
        self.steps += 1
        if self.steps == self.skip:
            self.started = time.perf_counter()
        elif self.steps == self.skip + self.timed:
            per_step = (time.perf_counter() - self.started) / self.timed
            total = per_step * self.total_steps
            log.warning(
                "%s: training on the CPU at %.2f s per step; the whole run (%d steps) takes about %s%s",
                self.why,
                per_step,
                self.total_steps,
                duration(total),
                f". {QUICK_RECIPE}" if total > LONG_S else "",
            )
