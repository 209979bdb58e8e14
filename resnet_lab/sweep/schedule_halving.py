"""Successive halving over complete schedules: the sweep's multi-fidelity mode
(`hparams_search.pruner.kind=schedule_halving`).

Under a one-cycle schedule an early epoch ranks trials badly: a high peak LR is still climbing
when a low one has already settled, so a pruner that judges epoch 1 of an 8-epoch run stops the
trials that end best (measured: the median pruner stopped the two best max_lr values of an
unpruned sweep after epoch 1). Here every trial is judged only at the end of a complete schedule:
it first trains a whole short run (the smallest rung, e.g. 1 of 8 epochs, with its own one-cycle),
and only the best 1 in `reduction_factor` of the trials at a rung train again, from scratch, a
whole run `reduction_factor` times longer, up to the recipe's own length. The sweeper reports
each rung's final value to the trial at step = the rung's epochs, so the study holds the same
ladder the decision was made on, and a trial that is not promoted is told PRUNED there.
"""

from __future__ import annotations

import math


def rungs(epochs: int, min_epochs: int, reduction_factor: int) -> list[int]:
    """The schedule lengths, shortest first, ending with the recipe's `epochs`: each is the next
    one divided by `reduction_factor` (rounded), while it stays at least `min_epochs`."""
    ladder = [epochs]
    while True:
        shorter = max(min_epochs, round(ladder[0] / reduction_factor))
        if shorter >= ladder[0] or ladder[0] <= min_epochs:
            return ladder
        ladder.insert(0, shorter)


def promoted(value: float, others: list[float], reduction_factor: int, maximize: bool) -> bool:
    """Whether a trial whose complete run at this rung scored `value` goes on to the next: it is
    among the best 1 in `reduction_factor` of every trial at this rung so far (`others`, from
    this and earlier invocations; at least the best one always goes on). A tie goes to the trial
    that got there first: equal values say nothing about which is better, and each promotion
    costs a longer run."""
    ranked = [v for v in others if not math.isnan(v)]
    keep = max(1, (len(ranked) + 1) // reduction_factor)
    as_good = sum((v >= value) if maximize else (v <= value) for v in ranked)
    return as_good < keep
