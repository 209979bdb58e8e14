"""The channel from a sweep's job back to its Optuna trial: every evaluated epoch is reported as
an intermediate value, so a study holds each trial's learning curve (optuna-dashboard's
intermediate-values plot) and not only its final value, and a pruner can stop a hopeless trial
after any evaluated epoch.

A job finds its trial in one of two ways. Jobs run in the sweeper's own process (Hydra's basic
launcher) get the live trial handle the sweeper registered for their run folder, which works for
every storage, in-memory included. Jobs in other processes (joblib, submitit, Ray) open the
study's storage by its URL and address the trial by number; an in-memory study cannot be reached
from there, and a job that cannot open its study trains without reporting (it says so once).

Below the sweep and the training loop alike: it imports neither, and Optuna only when used.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from resnet_lab.config.schema import PrunerConfig, PrunerKind

log = logging.getLogger(__name__)

CURVE_ATTR = "curve"  # {epoch: objective} of a trial in a study of several objectives

# Live trial handles of the jobs the sweeper runs right now, by resolved run folder: filled by
# `live_trials` for the length of one batch, empty otherwise.
_LIVE: dict[str, Any] = {}


@contextmanager
def live_trials(handles: dict[Path, Any]) -> Iterator[None]:
    """While a batch runs, its jobs in this process find their trials by run folder."""
    keys = [str(run_dir.resolve()) for run_dir in handles]
    _LIVE.update(zip(keys, handles.values()))
    try:
        yield
    finally:
        for key in keys:
            _LIVE.pop(key, None)


@dataclass(frozen=True)
class Pruned:
    """What a sweep's job returns when its pruner stopped it after `epoch` (objective `value`):
    a result, not a failure, so it crosses any launcher's process boundary as a plain value."""

    epoch: int
    value: float


@dataclass(frozen=True)
class TrialAddress:
    """Where a job's trial lives, as the job's own Hydra config tells it."""

    study_name: str
    storage: str | None  # None: in-memory, reachable only from the sweeper's process
    number: int


class TrialReporter:
    """Reports a job's evaluated epochs to its trial and, with a pruner, asks after each whether
    the trial should stop. The job decides with its own pruner, so the same settings prune a job
    in the sweep's process and one in a worker process alike."""

    def __init__(self, handle: Any, pruner: Any = None) -> None:
        self.handle, self.prunes = handle, pruner is not None
        self.curve: dict[str, float] | None = {} if len(handle.study.directions) > 1 else None
        if pruner is not None:
            handle.study.pruner = pruner

    @classmethod
    def for_job(
        cls, run_dir: Path, address: TrialAddress | None, pruning: PrunerConfig | None = None, judge_from: int = 0, eval_images: int = 0
    ) -> "TrialReporter | None":
        """`judge_from`: the epoch the schedule's LR peaks at, before which the margin pruner
        waits; `eval_images`: the images each epoch is evaluated on."""
        handle = _LIVE.get(str(run_dir.resolve()))
        if handle is None and address is not None:
            handle = _open_trial(address)
        if handle is None:
            return None
        return cls(handle, build_pruner(pruning, judge_from, eval_images) if pruning is not None and pruning.kind != PrunerKind.none else None)

    def report(self, value: float, epoch: int, last: bool = False) -> bool:
        """Records `value` at step `epoch`; returns whether the pruner stops the trial here. The
        last epoch is never pruned: stopping there saves nothing and would discard a finished
        result. A storage that fails here costs the curve (and the pruning), never the run."""
        try:
            if self.curve is not None:
                # Optuna keeps intermediate values of single-objective studies only: a study of
                # several objectives holds each trial's curve as its `curve` attribute instead.
                self.curve[str(epoch)] = value
                self.handle.set_user_attr(CURVE_ATTR, dict(self.curve))
                return False
            self.handle.report(value, epoch)
            return self.prunes and not last and self.handle.should_prune()
        except Exception as error:
            log.warning("could not report epoch %d to trial %d (%s: %s)", epoch, self.handle.number, type(error).__name__, error)
            return False


def build_pruner(cfg: PrunerConfig, judge_from: int = 0, eval_images: int = 0) -> Any:
    """Optuna's pruner for `hparams_search.pruner` (steps are epochs); `eval_images`: how many
    images each epoch's value is measured on (the margin pruner's noise floor)."""
    import optuna

    kind = PrunerKind(cfg.kind)
    if kind == PrunerKind.margin:
        return LearnedMarginPruner(cfg.startup_trials, max(cfg.warmup_epochs, judge_from), eval_images)
    if kind == PrunerKind.peak_halving:
        return PeakHalvingPruner(list(cfg.keep_one_in), max(cfg.warmup_epochs, judge_from, 1))
    if kind == PrunerKind.median:
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
    if kind == PrunerKind.percentile:
        return optuna.pruners.PercentilePruner(cfg.percentile, n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
    if kind == PrunerKind.successive_halving:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_epochs, reduction_factor=cfg.reduction_factor)
    if kind == PrunerKind.hyperband:
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_epochs, reduction_factor=cfg.reduction_factor)
    return optuna.pruners.NopPruner()


def _open_trial(address: TrialAddress) -> Any:
    """The trial in the study's storage. A password masked in the job's config is dropped, so the
    database driver uses its own sources (PGPASSWORD, ~/.pgpass), as `sweep_report` does."""
    if address.storage is None:
        log.warning(
            "trial %d's epochs are not reported: its study is in memory in the sweep's process (use a sqlite, journal or PostgreSQL storage)", address.number
        )
        return None
    import optuna

    from resnet_lab.secrets import without_masked_password
    from resnet_lab.study_storage import open_storage

    try:
        storage = open_storage(without_masked_password(address.storage))
        study = optuna.load_study(study_name=address.study_name, storage=storage)
        # The storage's public lookup from (study, trial number) to the id a Trial handle takes.
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(address.study_name), address.number)
    except Exception as error:
        log.warning("trial %d's epochs are not reported: its study could not be opened here (%s: %s)", address.number, type(error).__name__, error)
        return None
    return optuna.trial.Trial(study, trial_id)


NEAR_BEST = 0.01  # trials that ended within one point of accuracy of the best teach the margin
NOISE_Z = 2.0  # the margin is never below this many standard deviations of two accuracies' difference
LR_KEY = "scheduler.max_lr"  # the searched peak LR: under one-cycle a higher one starts slower

Finished = tuple[dict[int, float], float, float | None]  # a complete trial's (curve, final value, peak LR)


def sampling_noise(accuracy: float, images: int) -> float:
    """How far apart two accuracies near `accuracy`, each measured on `images` images, can lie by
    chance alone (NOISE_Z standard deviations of their difference); 0 when the count is unknown.
    On 500 validation images two equal trials differ by up to ~6 points at 50% accuracy."""
    if images <= 0 or not 0.0 <= accuracy <= 1.0:
        return 0.0
    return NOISE_Z * math.sqrt(2 * accuracy * (1 - accuracy) / images)


def learned_margin_prunes(value: float, epoch: int, peak: float | None, complete: list[Finished], maximize: bool, startup: int, eval_images: int = 0) -> bool:
    """Whether a trial scoring `value` after `epoch`, with peak LR `peak`, trails too far to end
    among the best. `complete`: (curve, final value, peak LR) of the study's complete trials.
    Only those whose peak was at least this trial's judge it: a higher peak learns slower early,
    so trials that settled on lower peaks say nothing about it (and a high peak stopped for
    trailing them teaches the sampler that high peaks are bad: on one CPU sweep that cost 8
    points). At least `startup` such trials must have finished. The margin is learned from
    them: the most that any of them which ended within NEAR_BEST of their best trailed their
    leader at this epoch, and never less than the sampling noise of accuracies measured on
    `eval_images` images: with one finished trial the learned margin is 0, and on a small
    validation split a lag of several points can be chance alone. A trial further behind is
    stopped; one within it goes on, however slowly it started, as the best of them once did."""
    sign = 1.0 if maximize else -1.0
    seen = [(sign * curve[epoch], sign * final) for curve, final, at in complete if epoch in curve and (peak is None or at is None or at >= peak)]
    if len(seen) < max(startup, 1):
        return False
    lead = max(at for at, _ in seen)
    best = max(final for _, final in seen)
    margin = max(lead - at for at, final in seen if final >= best - NEAR_BEST)
    margin = max(margin, sampling_noise(sign * lead, eval_images))
    return not lead - sign * value <= margin  # a NaN value is stopped too


class LearnedMarginPruner:
    """`hparams_search.pruner.kind=margin`: Optuna's pruner interface (`prune(study, trial)`),
    judged from `judge_from` (the epoch the LR peaks at, or warmup_epochs) by
    `learned_margin_prunes`. Under one-cycle, the median pruner stops the eventual best after
    epoch 1, where a high peak is still climbing; this one compares trials only once their LR
    has peaked, only against trials with as high a peak, and only by the lag that good trials
    are known to have had, or the sampling noise of the `eval_images` it is measured on."""

    def __init__(self, startup_trials: int, judge_from: int, eval_images: int = 0) -> None:
        self.startup_trials, self.judge_from, self.eval_images = startup_trials, judge_from, eval_images

    def prune(self, study: Any, trial: Any) -> bool:
        import optuna

        epoch = trial.last_step
        if epoch is None or epoch < max(self.judge_from, 1):
            return False
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        complete = [(t.intermediate_values, t.value, t.params.get(LR_KEY)) for t in finished]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        value, peak = trial.intermediate_values[epoch], trial.params.get(LR_KEY)
        return learned_margin_prunes(value, epoch, peak, complete, maximize, self.startup_trials, self.eval_images)


def promoted(value: float, others: list[float], reduction_factor: int, maximize: bool) -> bool:
    """Whether a trial scoring `value` at a rung goes on: it is among the best 1 in
    `reduction_factor` of every trial at this rung so far (`others`, stopped ones included, as
    Optuna's successive halving ranks; at least the best one always goes on). A tie goes to the
    trial that got there first: equal values say nothing about which is better, and each
    promotion costs more epochs. A NaN value never goes on."""
    if math.isnan(value):
        return False
    ranked = [v for v in others if not math.isnan(v)]
    keep = max(1, (len(ranked) + 1) // reduction_factor)
    as_good = sum((v >= value) if maximize else (v <= value) for v in ranked)
    return as_good < keep


def peak_rungs(first: int, keep_one_in: list[int]) -> dict[int, int]:
    """Peak halving's rungs: {epoch: 1 in N}, the first at `first` (the LR's peak), one per epoch."""
    return {first + i: one_in for i, one_in in enumerate(keep_one_in)}


class PeakHalvingPruner:
    """`hparams_search.pruner.kind=peak_halving`: successive halving whose rungs start at the
    epoch the schedule's LR peaks (`first`) and follow one per epoch, 1 in `keep_one_in[i]`
    trials going on at rung i. Before the peak a higher peak LR is still climbing, so earlier
    rungs (Optuna's successive halving starts at min_resource) rank the eventual best low; the
    rungs stop soon after the peak, since every later one costs the survivors' epochs while the
    ranks of high peaks jump by several points from epoch to epoch until the LR anneals."""

    def __init__(self, keep_one_in: list[int], first: int) -> None:
        self.rungs = peak_rungs(first, keep_one_in)

    def prune(self, study: Any, trial: Any) -> bool:
        import optuna

        epoch = trial.last_step
        one_in = self.rungs.get(epoch)
        if one_in is None:
            return False
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
        reached = [t for t in study.get_trials(deepcopy=False, states=states) if t.number != trial.number and epoch in t.intermediate_values]
        others = [t.intermediate_values[epoch] for t in reached]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return not promoted(trial.intermediate_values[epoch], others, one_in, maximize)
