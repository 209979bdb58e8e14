"""Pruning rules replayed on the learning curves of finished, unpruned sweeps.

    python -m benchmarks.pruning_replay benchmarks/results/<date>-cpu-sweep_pruning-none.json [--eval-images 500] [--out benchmarks/results]

A sweep_pruning result keeps every trial's validation curve. Here the trials are taken again in
the order they ran, and each rule decides after every epoch but the last whether it would have
stopped the trial, judging it against the trials that it let finish before: the epochs the rule
would have trained, the best final value it would have kept, and how far that is below the
unpruned best. A replay keeps the unpruned sweep's sampler draws: a real pruned sweep's sampler
also learns from the pruned trials and draws other values, so this ranks rules; it does not
replace running them (`python -m benchmarks.sweep_pruning --sweeps none,margin`).

Rules: `median@w`, Optuna's median pruner from epoch w (2 startup trials); `margin@w`, resnet_lab's
margin pruner (trial.py: learned_margin_prunes, 1 startup trial with as high a peak) from epoch w,
the epoch one-cycle's LR peaks at being the one it uses by itself, its margin never below the
sampling noise of `--eval-images` validation images (0: no floor); `margin-any-peak@w`, the same
judged against every finished trial, whatever its peak LR; `peak-halving@w`, resnet_lab's
peak_halving pruner with its default rungs from epoch w (one-cycle's peak on these recipes is
epoch 2), each rung ranking a trial against every trial that reached it before.
A sweep_quality result replays too (its unpruned sweeps; the oracle grid is left out).

`hindsight_bound` asks whether any pruner that ranks trials at equal epochs could meet a target
share of the epochs (`--target-share`, the issue's 40%) without losing the best: successive
halving with two rungs, one rule for every sweep, each rung ranking all the sweep's trials at
once, curves no real pruner has seen yet. Its smallest worst-case loss within the share bounds
what such pruners can keep on these curves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from benchmarks.cifar_speed.common import REPO
from resnet_lab.trial import LR_KEY, learned_margin_prunes, peak_rungs, promoted

MEDIAN_STARTUP = 2  # Optuna's median pruner: trials that finish before any is judged
MARGIN_STARTUP = 1  # the margin pruner: finished trials with as high a peak LR

Curve = list[float]
Trial = tuple[Curve, float | None]  # (validation curve, peak LR)
Rule = Callable[[float, int, float | None, list[Trial]], bool]


def median_rule(warmup: int) -> Rule:
    def prunes(value: float, epoch: int, peak: float | None, finished: list[Trial]) -> bool:
        if len(finished) < MEDIAN_STARTUP or epoch < warmup:
            return False
        return value < statistics.median(curve[epoch - 1] for curve, _ in finished)

    return prunes


def margin_rule(judge_from: int, any_peak: bool = False, eval_images: int = 0) -> Rule:
    def prunes(value: float, epoch: int, peak: float | None, finished: list[Trial]) -> bool:
        if epoch < judge_from:
            return False
        complete = [({e + 1: v for e, v in enumerate(curve)}, curve[-1], at) for curve, at in finished]
        lr = None if any_peak else peak
        return learned_margin_prunes(value, epoch, lr, complete, maximize=True, startup=MARGIN_STARTUP, eval_images=eval_images)

    return prunes


def peak_halving_rule(first: int, keep_one_in: list[int]) -> Rule:
    """resnet_lab's peak_halving pruner (trial.PeakHalvingPruner) from epoch `first`, where the
    LR peaks: at each rung a trial goes on when trial.promoted ranks it among the best 1 in N of
    every trial that reached that epoch before it, stopped ones included."""
    rungs = peak_rungs(first, keep_one_in)
    seen: dict[int, list[float]] = {epoch: [] for epoch in rungs}

    def prunes(value: float, epoch: int, peak: float | None, finished: list[Trial]) -> bool:
        if epoch not in rungs:
            return False
        others = list(seen[epoch])
        seen[epoch].append(value)
        return not promoted(value, others, rungs[epoch], maximize=True)

    return prunes


def replay(trials: list[Trial], prunes: Rule) -> dict[str, Any]:
    """`trials` in the order they ran; a trial is never judged after its last epoch."""
    finished: list[Trial] = []
    epochs = 0
    for curve, peak in trials:
        stopped = next((epoch for epoch in range(1, len(curve)) if prunes(curve[epoch - 1], epoch, peak, finished)), None)
        epochs += len(curve) if stopped is None else stopped
        if stopped is None:
            finished.append((curve, peak))
    full = sum(len(curve) for curve, _ in trials)
    best, kept = max(curve[-1] for curve, _ in trials), max(curve[-1] for curve, _ in finished)
    drop = round(100 * (best - kept), 2)
    return {"epochs": epochs, "share": round(epochs / full, 3), "best_kept": kept, "drop_points": drop, "pruned": len(trials) - len(finished)}


def halving_keeps(curves: list[Curve], rungs: tuple[tuple[int, int], ...]) -> tuple[int, float]:
    """Epochs trained and the best final value kept when, at each (epoch, kept) rung, only the
    `kept` best of the surviving trials at that epoch go on (ties to the earlier trial)."""
    alive, epochs, done = list(range(len(curves))), 0, 0
    for epoch, kept in rungs:
        epochs += len(alive) * (epoch - done)
        alive, done = sorted(alive, key=lambda i: -curves[i][epoch - 1])[:kept], epoch
    epochs += sum(len(curves[i]) - done for i in alive)
    return epochs, max(curves[i][-1] for i in alive)


def hindsight_bound(sweeps: dict[str, list[Curve]], target_share: float) -> dict[str, Any]:
    """Over every two-rung rule (epochs e1 < e2 before the last, kept k1 >= k2): the rule with the
    smallest worst loss among those within `target_share` on every sweep (None: no rule trains
    that little), and the smallest worst share among rules that lose nothing on any sweep."""
    sizes = {(len(curves), len(curves[0])) for curves in sweeps.values()}
    if len(sizes) != 1:
        return {"skipped": "the sweeps differ in trials or epochs"}
    ((n, length),) = sizes
    scored: list[dict[str, Any]] = []
    for (e1, e2), k1 in itertools.product(itertools.combinations(range(1, length), 2), range(1, n + 1)):
        for k2 in range(1, k1 + 1):
            rungs = ((e1, k1), (e2, k2))
            outcomes = {}
            for name, curves in sweeps.items():
                epochs, kept = halving_keeps(curves, rungs)
                outcomes[name] = {"share": round(epochs / (n * length), 3), "drop_points": round(100 * (max(c[-1] for c in curves) - kept), 2)}
            worst_share = max(o["share"] for o in outcomes.values())
            worst_drop = max(o["drop_points"] for o in outcomes.values())
            scored.append({"rungs": [list(r) for r in rungs], "worst_share": worst_share, "worst_drop_points": worst_drop, "sweeps": outcomes})
    within = min((r for r in scored if r["worst_share"] <= target_share), key=lambda r: (r["worst_drop_points"], r["worst_share"]), default=None)
    lossless = min((r for r in scored if r["worst_drop_points"] == 0), key=lambda r: r["worst_share"])
    return {"target_share": target_share, "trials": n, "epochs": length, "least_loss_within_target": within, "least_share_without_loss": lossless}


def rules(eval_images: int) -> dict[str, Rule]:
    keep_one_in = list(OmegaConf.load(REPO / "conf" / "hparams_search" / "optuna.yaml").hparams_search.pruner.keep_one_in)  # the shipped default
    return (
        {f"median@{w}": median_rule(w) for w in (1, 2, 3)}
        | {f"margin@{w}": margin_rule(w, eval_images=eval_images) for w in (1, 2, 3)}
        | {f"margin-any-peak@{w}": margin_rule(w, any_peak=True, eval_images=eval_images) for w in (1, 2, 3)}
        | {f"peak-halving@{w}": peak_halving_rule(w, keep_one_in) for w in (2, 3)}
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pruning_replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a sweep_pruning JSON whose unpruned sweeps kept their curves")
    parser.add_argument("--eval-images", type=int, default=0, help="validation images each epoch was measured on: the margin's noise floor (0: none)")
    parser.add_argument("--target-share", type=float, default=0.4, help="share of the unpruned epochs the hindsight bound may train")
    parser.add_argument("--out", type=Path, default=None, help="folder for <results name>-replay.json (default: beside the results)")
    args = parser.parse_args(argv)
    saved = json.loads(args.results.read_text())
    replays: dict[str, Any] = {}
    curves: dict[str, list[Curve]] = {}
    for name, sweep in saved["sweeps"].items():
        runs = sorted(sweep["runs"], key=lambda run: run["number"])
        if name == "oracle" or sweep.get("pruned") or not all(run.get("curve") for run in runs):
            continue  # only an unpruned sweep's curves say what every trial would have reached
        trials = [(run["curve"], (run.get("params") or {}).get(LR_KEY)) for run in runs]
        outcomes = {rule: replay(trials, prunes) for rule, prunes in rules(args.eval_images).items()}
        curves[name] = [curve for curve, _ in trials]
        replays[name] = {"epochs": sum(len(c) for c, _ in trials), "best": max(c[-1] for c, _ in trials), "rules": outcomes}
    if not replays:
        parser.error(f"{args.results} has no unpruned sweep with learning curves (run benchmarks.sweep_pruning --sweeps none)")
    startup = {"median": MEDIAN_STARTUP, "margin": MARGIN_STARTUP}
    result = {"source": args.results.name, "machine": saved["machine"], "recipe": saved["recipe"], "startup_trials": startup, "eval_images": args.eval_images}
    result["sweeps"] = replays
    result["hindsight_bound"] = bound = hindsight_bound(curves, args.target_share)
    floor = f"-floor{args.eval_images}" if args.eval_images else ""
    out = (args.out or args.results.parent) / f"{args.results.stem}-replay{floor}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, part in replays.items():
        for rule, outcome in part["rules"].items():
            kept = f"best kept {outcome['best_kept']:.4f} (-{outcome['drop_points']} points)"
            print(f"{name} {rule}: {outcome['epochs']} of {part['epochs']} epochs ({outcome['share']:.0%}), {kept}")
    if "skipped" not in bound:
        labels = {"least_loss_within_target": f"least loss within {args.target_share:.0%} of the epochs", "least_share_without_loss": "no loss"}
        for key, label in labels.items():
            if (rule := bound[key]) is None:
                continue
            print(f"hindsight halving, {label}: rungs {rule['rungs']}, worst share {rule['worst_share']:.0%}, worst loss {rule['worst_drop_points']} points")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
