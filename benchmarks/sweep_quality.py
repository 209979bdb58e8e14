"""How good the default sweep's answer is: its choice's test accuracy against an oracle's.

    python -m benchmarks.sweep_quality [--data ../shared/data/cifar10-jpeg.tar.gz] [--grid 6] [--trials 16] [--seeds 0,1,2]
        [--pruned peak_halving,margin] [--resume RESULT]

One LR range test, then, all on the same recipe and the default search space of
`hparams_search=optuna` (max_lr in its `lr_window` around the range test's suggestion, weight
decay in the optimizer's weight_decay_window):

* the oracle: the grid sampler over that space (--grid log-spaced values per parameter, every
  point trained in full); its best by validation, and that point's test accuracy;
* per TPE seed, the default sweep of --trials trials unpruned and with each --pruned pruner.

`--resume` completes an earlier result: its sweeps are kept (delete one from the file to run it
again), the missing ones run, if the machine, recipe and range test are the same.

Per sweep: the configuration it chose (by validation), that choice's test accuracy, its regret
(the oracle's test accuracy minus it, in points), the epochs it trained against the unpruned
sweep of its seed, and its wall time. On a CPU the net is 1/8 wide on 5,000 / 2,000 images for 8
epochs (validated on 10% of the full training split, 5,000 images); with CUDA, the speedrun
recipe at full width on all the data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.common import DEFAULT_DATA, REPO, image_folder
from benchmarks.sweep_pruning import SWEEPS, placement, run, sizes, sweep
from resnet_lab.optim.lr_range import read_suggestion
from resnet_lab.sweep.report import WD_KEY
from resnet_lab.trial import LR_KEY

PRUNED = ("peak_halving", "margin")  # the pruners judged against the unpruned sweep (sweep_pruning.SWEEPS)
TARGETS = {"regret_points": 0.5, "epochs_vs_unpruned": 0.4}
NEAR = 0.01  # oracle points within one point of validation accuracy of its best: its noise


def in_order(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The oracle, then each seed's sweeps, unpruned first: the order the table reads in,
    whichever seeds and pruners each (resumed) run added."""
    names = list(dict.fromkeys(["none", *PRUNED, *SWEEPS]))

    def place(key: str) -> tuple[int, int]:
        name, _, seed = key.partition(".seed")
        return (-1, 0) if key == "oracle" else (int(seed), names.index(name) if name in names else len(names))

    return {key: results[key] for key in sorted(results, key=place)}


def oracle_grid(oracle: dict[str, Any]) -> dict[str, Any]:
    """The oracle's points as a table of validation (and test) accuracy per max_lr x weight decay."""
    rows: dict[str, dict[str, Any]] = {}
    for point in oracle["runs"]:
        if point["state"] != "COMPLETE":
            continue
        lr, decay = point["params"][LR_KEY], point["params"][WD_KEY]
        rows.setdefault(f"{lr:.4g}", {})[f"{decay:.4g}"] = {"validation": point["curve"][-1] if point["curve"] else None, "test": point["test"]}
    return rows


def near_best(oracle: dict[str, Any], within: float = NEAR) -> dict[str, Any]:
    """The test accuracies of the oracle's points within `within` of its best validation
    accuracy: points that validation cannot tell apart, whose spread is the noise a regret
    measured against the single best point carries."""
    finals = [(run["curve"][-1], run["test"]) for run in oracle["runs"] if run["state"] == "COMPLETE" and run["curve"] and run["test"] is not None]
    best = max(validation for validation, _ in finals)
    tests = [test for validation, test in finals if validation >= best - within]
    return {
        "within_validation_points": 100 * within,
        "points": len(tests),
        "test_min": min(tests),
        "test_mean": sum(tests) / len(tests),
        "test_max": max(tests),
    }


def judge(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each sweep's regret against the oracle, and the pruned sweeps' epochs against the unpruned one of their seed."""
    oracle = results.get("oracle")
    if oracle is None or oracle["best_test_accuracy"] is None:
        return {}
    judged: dict[str, Any] = {}
    for key, part in results.items():
        if key == "oracle" or part["best_test_accuracy"] is None:
            continue
        name, _, seed = key.partition(".seed")
        regret = 100 * (oracle["best_test_accuracy"] - part["best_test_accuracy"])
        validation_regret = 100 * (oracle["best_accuracy"] - part["best_accuracy"])
        judged[key] = {"regret_points": regret, "validation_regret_points": validation_regret, "regret_met": regret <= TARGETS["regret_points"]}
        base = results.get(f"none.seed{seed}")
        if name != "none" and base is not None:
            share = part["epochs"] / base["epochs"]
            judged[key] |= {"epochs_vs_unpruned": share, "epochs_met": share <= TARGETS["epochs_vs_unpruned"]}
    return judged


def table(results: dict[str, dict[str, Any]], judged: dict[str, Any]) -> str:
    rows = [
        "| sweep | TPE seed | trials | epochs trained | wall | chosen max_lr | chosen weight decay | its validation | its test | regret (test, points) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, part in results.items():
        name, _, seed = key.partition(".seed")
        params = part["best_params"] or {}
        share = judged.get(key, {}).get("epochs_vs_unpruned")
        epochs = f"{part['epochs']}" + ("" if share is None else f" ({100 * share:.0f}%)")
        regret = judged.get(key, {}).get("regret_points")
        rows.append(
            f"| {name} | {seed or '-'} | {part['trials']} | {epochs} | {part['wall_s']:.0f} s "
            f"| {params.get(LR_KEY, float('nan')):.3g} | {params.get(WD_KEY, float('nan')):.2g} "
            f"| {_percent(part['best_accuracy'])} | {_percent(part['best_test_accuracy'])} | {'-' if regret is None else f'{regret:+.2f}'} |"
        )
    return "\n".join(rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or a .tar.gz of one (the JPEG copy)")
    parser.add_argument("--grid", type=int, default=6, help="the oracle's log-spaced values per parameter (>= 2): grid x grid full runs")
    parser.add_argument("--trials", type=int, default=16, help="trials per sweep (>= 2)")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2], help="TPE seeds: both sweeps run once per seed")
    parser.add_argument("--pruned", type=lambda text: text.split(","), default=list(PRUNED), help="pruners run beside the unpruned sweep, per seed")
    parser.add_argument("--resume", type=Path, help="a result of this benchmark to complete: its sweeps are kept, the missing ones run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tiny", action="store_true", help="CPU-test sizes: 1/8 width, batch 8, 2 epochs")
    args = parser.parse_args(argv)
    if args.grid < 2:
        parser.error(f"--grid={args.grid}: at least 2 values per parameter")
    if args.trials < 2:
        parser.error(f"--trials={args.trials}: at least 2 (the margin pruner judges against a finished trial)")
    unknown = [name for name in args.pruned if name == "none" or name not in SWEEPS]
    if unknown:
        parser.error(f"--pruned {','.join(unknown)}: allowed: {', '.join(name for name in SWEEPS if name != 'none')}")
    cuda, host, label = placement(parser, args)
    path = args.resume or args.out / f"{date.today().isoformat()}-{label}-sweep_quality.json"
    earlier = json.loads(args.resume.read_text()) if args.resume else {}
    with tempfile.TemporaryDirectory(prefix="sweep_quality_") as scratch:
        work = Path(scratch)
        recipe = sizes(image_folder(args.data.resolve(), work), args.tiny, cuda)
        finder_s = run(["resnet_lab.lr_find", *recipe, f"hydra.run.dir={work / 'lr_find'}"], work)
        finder = work / "lr_find" / "lr_finder.json"
        result: dict[str, Any] = {
            "date": earlier.get("date", date.today().isoformat()),
            "machine": host,
            "recipe": [setting for setting in recipe if not setting.startswith("data.root=")],
            "search_space": "hparams_search=optuna's defaults (lr_window, the optimizer's weight_decay_window)",
            "grid_points": args.grid,
            "trials": args.trials,
            "lr_finder_s": finder_s,
            "lr_suggestion": read_suggestion(str(finder)),
        }
        same = ("machine", "recipe", "grid_points", "trials", "lr_suggestion")
        if earlier and [earlier.get(key) for key in same] != [result[key] for key in same]:
            parser.error(f"--resume {args.resume} ran another machine, recipe, grid, trial count or range test: not comparable, run without --resume")
        plan = [("oracle", ["hydra/sweeper/sampler=grid", f"hparams_search.grid_points={args.grid}", *SWEEPS["none"]], args.grid**2)]
        for seed in args.seeds:
            plan += [(f"{name}.seed{seed}", [*SWEEPS[name], f"hydra.sweeper.sampler.seed={seed}"], args.trials) for name in ("none", *args.pruned)]
        results: dict[str, dict[str, Any]] = earlier.get("sweeps", {})
        for key, settings, trials in plan:  # the file is rewritten after each sweep: a cut-short run keeps the ones done
            if key not in results:
                results[key] = sweep(key, settings, recipe, finder, trials, work)
                print(f"{key}: {json.dumps({k: v for k, v in results[key].items() if k != 'runs'})}", flush=True)
            ordered = in_order(results)
            judged = judge(ordered)
            result |= {
                "sweeps": ordered,
                "oracle_grid": oracle_grid(ordered["oracle"]),
                "oracle_near_best": near_best(ordered["oracle"]),
                "targets": TARGETS,
                "judged": judged,
                "table": table(ordered, judged),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])
    print(json.dumps(result["judged"], indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
