"""What pruning saves on one hyperparameter search, and what workers that never wait save.

    python -m benchmarks.sweep_pruning [--data ../shared/data/cifar10-jpeg.tar.gz] [--trials 16] [--out benchmarks/results]

One LR range test, then Optuna sweeps of max_lr x weight_decay around its window, each the real
command (`python -m resnet_lab.train -m hparams_search=optuna ...`) on its own SQLite study, with
the same TPE seed:

* none, median, hyperband, schedule_halving, margin: one trial at a time, so they differ only
  in the pruner;
* batch2, workers2: the median pruner with two trials at once, as batches of two
  (hydra.sweeper.n_jobs=2 on the joblib launcher) and as two workers that never wait
  (hparams_search.workers=2).

Per sweep: epochs trained, wall seconds, best accuracy, trials pruned; for the two parallel
sweeps, the slots' idle share of the time trials ran (from each job's own start and end in its
summary.json: a batch's Optuna trials all carry the batch's). On a CPU the net is 1/8 wide on
5,000 / 2,000 images for 8 epochs; with CUDA, the speedrun recipe at full width on all the data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.common import DEFAULT_DATA, REPO, framework_env, image_folder
from benchmarks.cifar_speed.report import machine, machine_label
from resnet_lab.optim.lr_range import read_suggestion
from resnet_lab.sweep.report import evaluated_accuracy

SWEEPS: dict[str, list[str]] = {
    "none": ["hparams_search.pruner.kind=none"],
    "median": ["hparams_search.pruner.kind=median", "hparams_search.pruner.startup_trials=3", "hparams_search.pruner.warmup_epochs=1"],
    "hyperband": ["hparams_search.pruner.kind=hyperband", "hparams_search.pruner.min_epochs=1", "hparams_search.pruner.reduction_factor=3"],
    "schedule_halving": ["hparams_search.pruner.kind=schedule_halving", "hparams_search.pruner.min_epochs=1", "hparams_search.pruner.reduction_factor=3"],
    "margin": ["hparams_search.pruner.kind=margin", "hparams_search.pruner.startup_trials=1"],
    "peak_halving": ["hparams_search.pruner.kind=peak_halving"],
}
PARALLEL: dict[str, list[str]] = {
    "batch2": [*SWEEPS["median"], "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
    "workers2": [*SWEEPS["median"], "hparams_search.workers=2"],
}
TARGETS = {"epochs_vs_unpruned": 0.4, "best_accuracy_drop_points": 0.5, "idle_share": 0.05}


def sizes(root: Path, tiny: bool, cuda: bool) -> list[str]:
    """The recipe every sweep trains, evaluated after every epoch (what a pruner judges)."""
    common = ["data=image_folder", f"data.root={root}", "logger=none", "explain=none", "trainer.progress=false", "trainer.tta=none", "trainer.eval_every=1"]
    if tiny:
        return [*common, "model.width_multiplier=0.125", "data.batch_size=8", "data.eval_batch_size=64", "trainer.epochs=2", "trainer.device=cpu"]
    if cuda:
        return ["experiment=speedrun", *common]
    cpu = ["model.width_multiplier=0.125", "data.train_subset=5000", "data.test_subset=2000", "data.batch_size=128", "trainer.epochs=8"]
    return [*common, *cpu, "trainer.device=cpu"]


def placement(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[bool, dict[str, Any], str]:
    """What the sweep benchmarks check before any work (--data exists, and a --resume file where
    the benchmark takes one), then whether CUDA trains (never with --tiny), the machine, and its
    label in the result file's name."""
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist: pass the JPEG copy's .tar.gz or an image-folder root")
    resume = getattr(args, "resume", None)
    if resume is not None and not resume.is_file():
        parser.error(f"--resume {resume} is not a file: pass a result this benchmark wrote")
    import torch

    host = machine()
    return torch.cuda.is_available() and not args.tiny, host, machine_label(host, args.tiny)


def run(args: list[str], work: Path) -> float:
    """Wall seconds of `python -m <args>` in `work`; its output goes to a log beside it."""
    env = framework_env(WANDB_MODE="offline")
    log = work / f"{args[0].rsplit('.', 1)[-1]}-{len(list(work.glob('*.log')))}.log"
    start = time.perf_counter()
    with open(log, "w") as output:
        code = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"python -m {' '.join(args)} exited with {code}; see {log}")
    return time.perf_counter() - start


# The window every sweep of this benchmark searches, the same since its first results:
# [suggestion / 3, suggestion x 60] around the range test's valley, which holds the default recipe's 0.4.
WINDOW = ["hparams_search.lr_window=[0.333333,60]"]


def sweep(name: str, settings: list[str], recipe: list[str], finder: Path, trials: int, work: Path) -> dict[str, Any]:
    """The real sweep command, `settings` after the recipe and the range test: what it trained,
    what it chose (validation) and that choice's test accuracy, and every run's curve."""
    import optuna

    storage = f"sqlite:///{work / name}.db"
    command = ["resnet_lab.train", "-m", "hparams_search=optuna", *recipe, f"hparams_search.lr_finder_json={finder}"]
    command += [f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={work / name}", *settings]
    wall = run(command, work)
    study = optuna.load_study(study_name="resnet_lab", storage=storage)
    by_number = {t.number: t for t in study.trials}
    # Every run folder (<n>, and with schedule halving <n>-e<epochs> for each shorter rung).
    folders = sorted((work / name).glob("*/summary.json"))
    ran = [(by_number[int(f.parent.name.split("-")[0])], json.loads(f.read_text())) for f in folders]
    spans = [(s["started_unix_s"], s["finished_unix_s"]) for _, s in ran]
    first = min(start for start, _ in spans)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value, default=None)
    slots = 2 if name.split(".seed")[0] in PARALLEL else 1
    return {
        "wall_s": wall,
        "trials": len(study.trials),
        "runs_trained": len(ran),
        "epochs": sum(s["epochs"] for _, s in ran),
        "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
        "best_accuracy": None if best is None else best.value,
        "best_test_accuracy": None if best is None else json.loads(Path(best.user_attrs["run_dir"], "summary.json").read_text()).get("test", {}).get("acc"),
        "best_params": None if best is None else best.params,
        "idle_share": idle_share(spans, slots),
        "idle_share_until_last_start": idle_share(spans, slots, until=max(start for start, _ in spans)),
        # Each run's parameters and validation curve: pruning rules replay on them (benchmarks/pruning_replay.py).
        "runs": [
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "epochs": s["epochs"],
                "curve": list(evaluated_accuracy(f.parent).values()),
                "test": s.get("test", {}).get("acc"),
                "start_s": round(start - first, 2),
                "end_s": round(end - first, 2),
            }
            for (t, s), (start, end), f in zip(ran, spans, folders)
        ],
    }


def idle_share(spans: list[tuple[float, float]], slots: int, until: float | None = None) -> float:
    """The share of slot-time from the first trial's start to the last one's end (or to
    `until`) in which a slot ran no trial: batches wait for their slowest trial, workers only at
    the end, when fewer trials are left than slots (after the last trial started)."""
    begin = min(start for start, _ in spans)
    end = max(finish for _, finish in spans) if until is None else until
    busy = sum(max(0.0, min(finish, end) - max(start, begin)) for start, finish in spans)
    return 1 - busy / (slots * (end - begin))


def judge(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each target for the sweeps that ran (pruners against `none`, when it ran)."""
    judged: dict[str, Any] = {}
    for key, part in results.items():
        name, _, seed = key.partition(".seed")
        base = results.get(f"none.seed{seed}" if seed else "none")
        if name == "none" or name not in SWEEPS or base is None or base["best_accuracy"] is None or part["best_accuracy"] is None:
            continue
        share = part["epochs"] / base["epochs"]
        drop = 100 * (base["best_accuracy"] - part["best_accuracy"])
        tests = (base["best_test_accuracy"], part["best_test_accuracy"])
        test_drop = None if None in tests else 100 * (tests[0] - tests[1])
        judged[key] = {
            "epochs_vs_unpruned": share,
            "epochs_met": share <= TARGETS["epochs_vs_unpruned"],
            "best_accuracy_drop_points": drop,
            "best_test_accuracy_drop_points": test_drop,
            "accuracy_met": drop <= TARGETS["best_accuracy_drop_points"] and (test_drop is None or test_drop <= TARGETS["best_accuracy_drop_points"]),
        }
    for name in PARALLEL:
        if name not in results:
            continue
        judged[name] = {
            "idle_share": results[name]["idle_share"],
            "idle_met": results[name]["idle_share"] < TARGETS["idle_share"],
            "idle_share_until_last_start": results[name]["idle_share_until_last_start"],
        }
    return judged


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| sweep | trials | epochs trained | wall | best (validation) | its test accuracy | pruned | slots idle (until the last start) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, part in results.items():
        best = "-" if part["best_accuracy"] is None else f"{100 * part['best_accuracy']:.2f}%"
        test = "-" if part["best_test_accuracy"] is None else f"{100 * part['best_test_accuracy']:.2f}%"
        rows.append(
            f"| {name} | {part['trials']} | {part['epochs']} | {part['wall_s']:.0f} s | {best} | {test} | {part['pruned']} "
            f"| {100 * part['idle_share']:.1f}% ({100 * part['idle_share_until_last_start']:.1f}%) |"
        )
    return "\n".join(rows)


def merge(paths: list[Path], out: Path) -> dict[str, Any]:
    """One result from several runs of this benchmark on the same recipe and range test (sweeps
    run side by side as separate commands, to use more cores): their sweeps, judged together."""
    parts = [json.loads(path.read_text()) for path in paths]
    first = parts[0]
    same = ("recipe", "lr_suggestion", "trials", "machine")
    for path, part in zip(paths, parts):
        if [part[key] for key in same] != [first[key] for key in same]:
            raise SystemExit(f"{path} ran another recipe, range test, trial count or machine than {paths[0]}: not comparable")
    results = {name: sweep for part in parts for name, sweep in part["sweeps"].items()}
    merged = {**first, "merged_from": [path.name for path in paths], "sweeps": results, "judged": judge(results), "table": table(results)}
    path = out / f"{first['date']}-{machine_label(first['machine'])}-sweep_pruning-{'-'.join(sorted({k.split('.seed')[0] for k in results}))}.json"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(merged["table"])
    print(json.dumps(merged["judged"], indent=2))
    print(f"wrote {path}")
    return merged


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_pruning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--merge", type=Path, nargs="+", help="instead of running: merge these result files of the same recipe into one")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or a .tar.gz of one (the JPEG copy)")
    parser.add_argument("--trials", type=int, default=16, help="trials per sweep (>= 4)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tiny", action="store_true", help="CPU-test sizes: 1/8 width, batch 8, 2 epochs")
    parser.add_argument("--sweeps", type=lambda text: text.split(","), default=[*SWEEPS, *PARALLEL], help="comma-separated subset to run")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0], help="TPE seeds: each sweep runs once per seed")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    unknown = sorted(set(args.sweeps) - {*SWEEPS, *PARALLEL})
    if unknown:
        parser.error(f"unknown sweep(s) {', '.join(unknown)}; allowed: {', '.join([*SWEEPS, *PARALLEL])}")
    if args.trials < 4:
        parser.error(f"--trials={args.trials}: at least 4 (the median pruner waits for 3 finished trials)")
    cuda, host, label = placement(parser, args)
    with tempfile.TemporaryDirectory(prefix="sweep_pruning_") as scratch:
        work = Path(scratch)
        recipe = sizes(image_folder(args.data.resolve(), work), args.tiny, cuda)
        finder_s = run(["resnet_lab.lr_find", *recipe, f"hydra.run.dir={work / 'lr_find'}"], work)
        finder = work / "lr_find" / "lr_finder.json"
        suggestion = read_suggestion(str(finder))
        chosen = {name: settings for name, settings in {**SWEEPS, **PARALLEL}.items() if name in args.sweeps}
        subset = "" if set(args.sweeps) == {*SWEEPS, *PARALLEL} else "-" + "-".join(args.sweeps)
        path = args.out / f"{date.today().isoformat()}-{label}-sweep_pruning{subset}.json"
        results: dict[str, dict[str, Any]] = {}
        runs = [(name, settings, seed) for seed in args.seeds for name, settings in chosen.items()]
        for name, settings, seed in runs:  # the file is rewritten after each sweep: a cut-short run keeps the ones done
            key = name if args.seeds == [0] else f"{name}.seed{seed}"
            results[key] = sweep(key, [*WINDOW, *settings, f"hydra.sweeper.sampler.seed={seed}"], recipe, finder, args.trials, work)
            name = key
            result = {
                "date": date.today().isoformat(),
                "machine": host,
                "recipe": [setting for setting in recipe if not setting.startswith("data.root=")],
                "trials": args.trials,
                "lr_finder_s": finder_s,
                "lr_suggestion": suggestion,
                "sweeps": results,
                "targets": TARGETS,
                "judged": judge(results),
                "table": table(results),
            }
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'runs'})}", flush=True)
    print(result["table"])
    print(json.dumps(result["judged"], indent=2))
    return result


if __name__ == "__main__":
    main()
