"""Pruning rules replayed on the learning curves of finished, unpruned sweeps.

    python -m benchmarks.pruning_replay benchmarks/results/<date>-cpu-sweep_pruning-none.json [--out benchmarks/results]

A sweep_pruning result keeps every trial's validation curve. Here the trials are taken again in
the order they ran, and each rule decides after every epoch but the last whether it would have
stopped the trial, judging it against the trials that it let finish before: the epochs the rule
would have trained, the best final value it would have kept, and how far that is below the
unpruned best. A replay keeps the unpruned sweep's sampler draws: a real pruned sweep's sampler
also learns from the pruned trials and draws other values, so this ranks rules; it does not
replace running them (`python -m benchmarks.sweep_pruning --sweeps none,margin`).

Rules: `median@w`, Optuna's median pruner from epoch w (2 startup trials); `margin@w`, resnet_lab's
margin pruner (trial.py: learned_margin_prunes) from epoch w, the epoch one-cycle's LR peaks at
being the one it uses by itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from resnet_lab.trial import learned_margin_prunes

STARTUP = 2  # trials that finish before any is judged, as in the benchmark's sweeps

Curve = list[float]
Rule = Callable[[float, int, list[Curve]], bool]


def median_rule(warmup: int) -> Rule:
    def prunes(value: float, epoch: int, finished: list[Curve]) -> bool:
        if len(finished) < STARTUP or epoch < warmup:
            return False
        return value < statistics.median(curve[epoch - 1] for curve in finished)

    return prunes


def margin_rule(judge_from: int) -> Rule:
    def prunes(value: float, epoch: int, finished: list[Curve]) -> bool:
        if epoch < judge_from:
            return False
        complete = [({e + 1: v for e, v in enumerate(curve)}, curve[-1]) for curve in finished]
        return learned_margin_prunes(value, epoch, complete, maximize=True, startup=STARTUP)

    return prunes


def replay(curves: list[Curve], prunes: Rule) -> dict[str, Any]:
    """`curves` in the order the trials ran; a trial is never judged after its last epoch."""
    finished: list[Curve] = []
    epochs = 0
    for curve in curves:
        stopped = next((epoch for epoch in range(1, len(curve)) if prunes(curve[epoch - 1], epoch, finished)), None)
        epochs += len(curve) if stopped is None else stopped
        if stopped is None:
            finished.append(curve)
    full = sum(len(curve) for curve in curves)
    best, kept = max(curve[-1] for curve in curves), max(curve[-1] for curve in finished)
    drop = round(100 * (best - kept), 2)
    return {"epochs": epochs, "share": round(epochs / full, 3), "best_kept": kept, "drop_points": drop, "pruned": len(curves) - len(finished)}


RULES = {f"median@{w}": median_rule(w) for w in (1, 2, 3)} | {f"margin@{w}": margin_rule(w) for w in (1, 2, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pruning_replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a sweep_pruning JSON whose unpruned sweeps kept their curves")
    parser.add_argument("--out", type=Path, default=None, help="folder for <results name>-replay.json (default: beside the results)")
    args = parser.parse_args(argv)
    saved = json.loads(args.results.read_text())
    replays: dict[str, Any] = {}
    for name, sweep in saved["sweeps"].items():
        runs = sorted(sweep["runs"], key=lambda run: run["number"])
        if sweep.get("pruned") or not all(run.get("curve") for run in runs):
            continue  # only an unpruned sweep's curves say what every trial would have reached
        curves = [run["curve"] for run in runs]
        rules = {rule: replay(curves, prunes) for rule, prunes in RULES.items()}
        replays[name] = {"epochs": sum(len(c) for c in curves), "best": max(c[-1] for c in curves), "rules": rules}
    if not replays:
        parser.error(f"{args.results} has no unpruned sweep with learning curves (run benchmarks.sweep_pruning --sweeps none)")
    result = {"source": args.results.name, "machine": saved["machine"], "recipe": saved["recipe"], "startup_trials": STARTUP, "sweeps": replays}
    out = (args.out or args.results.parent) / f"{args.results.stem}-replay.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, part in replays.items():
        for rule, outcome in part["rules"].items():
            kept = f"best kept {outcome['best_kept']:.4f} (-{outcome['drop_points']} points)"
            print(f"{name} {rule}: {outcome['epochs']} of {part['epochs']} epochs ({outcome['share']:.0%}), {kept}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
