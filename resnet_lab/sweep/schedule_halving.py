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
ladder the decision was made on, and a trial that is not promoted (trial.promoted, the rank rule
it shares with peak_halving) is told PRUNED there.
"""

from __future__ import annotations


def rungs(epochs: int, min_epochs: int, reduction_factor: int) -> list[int]:
    """The schedule lengths, shortest first, ending with the recipe's `epochs`: each is the next
    one divided by `reduction_factor` (rounded), while it stays at least `min_epochs`."""
    ladder = [epochs]
    while True:
        shorter = max(min_epochs, round(ladder[0] / reduction_factor))
        if shorter >= ladder[0] or ladder[0] <= min_epochs:
            return ladder
        ladder.insert(0, shorter)
