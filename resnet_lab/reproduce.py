"""`python -m resnet_lab.reproduce <run_dir | checkpoint.pt | W&B run dir | sweep dir --best> [overrides...]`

Re-runs a finished run from the config it saved, into a new run directory, and prints the old and
new final metrics side by side. The saved config is turned back into command-line overrides (the
group choices, then every leaf value), so the rerun goes through exactly the same Hydra
composition and validation as any run, and extra overrides apply on top. With `--best`, the
location is a sweep directory (grid or Optuna) and its best complete trial is rerun.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from resnet_lab.errors import DataError
from resnet_lab.saved_run import command_line, load_saved_config, one_line_errors, output_folder, overrides_for, quote, run_location, without_regrouped

METRICS = ("train_loss", "train_acc", "eval_loss", "eval_acc")


def final_metrics(run_dir: Path) -> dict[str, float]:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
        return {**{key: float(summary["final"][key]) for key in METRICS}, "best_eval_acc": float(summary["best_eval_acc"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is damaged ({type(error).__name__}: {error}); the run's metrics cannot be read") from None


def original_metrics(location: Path) -> dict[str, float] | None:
    run_dir = location.parent.parent if location.is_file() else location
    if (run_dir / "summary.json").is_file():
        return final_metrics(run_dir)
    from resnet_lab.track.offline_run import find_transaction_log, read_offline_run

    if location.is_dir() and find_transaction_log(location) is not None:
        summary = read_offline_run(location).summary
        mapping = {"train_loss": "train/loss", "train_acc": "train/acc", "eval_loss": "test/loss", "eval_acc": "test/acc", "best_eval_acc": "best_eval_acc"}
        return {k: summary[v] for k, v in mapping.items() if v in summary}
    return None


def comparison_table(old: dict[str, float] | None, new: dict[str, float]) -> str:
    lines = [f"{'metric':<15}{'original':>14}{'rerun':>14}{'difference':>14}"]
    for key, value in new.items():
        before = None if old is None else old.get(key)
        diff = "" if before is None else f"{value - before:+.6g}"
        lines.append(f"{key:<15}{'n/a' if before is None else f'{before:.6g}':>14}{value:>14.6g}{diff:>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args, _, best = command_line(argv, __doc__, valued=())
    extra = args[1:]
    with one_line_errors():
        location = run_location(args[0], best)
        config, choices, source = load_saved_config(location)
        overrides = without_regrouped(overrides_for(config, choices), extra)
        original = original_metrics(location)  # read now: nothing of the original is read after the rerun
        new_dir = run_dir_override(extra, location)
    if new_dir is None:
        new_dir = str(output_folder(None, "reproduce"))
        extra.append(f"hydra.run.dir={new_dir}")
    print(f"reproducing {location} from {source} into {new_dir}", flush=True)
    code = run_forwarding([sys.executable, "-m", "resnet_lab.train", *overrides, f"reproduced_from={quote(str(location))}", *extra])
    if code != 0:
        sys.exit(code)
    print(comparison_table(original, final_metrics(Path(new_dir))))


def run_forwarding(command: list[str]) -> int:
    """Runs the rerun as the command a user would type (its own process, its own argv), its
    output passed on line by line as it comes; returns its exit code."""
    import subprocess
    import threading

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def forward(source: Any, target: Any) -> None:
        for line in source:
            target.write(line)
            target.flush()

    streams = [threading.Thread(target=forward, args=(process.stdout, sys.stdout)), threading.Thread(target=forward, args=(process.stderr, sys.stderr))]
    for stream in streams:
        stream.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = process.wait()  # the rerun got the same Ctrl-C, saves its state and says how to resume
    for stream in streams:
        stream.join()
    return code


def run_dir_override(extra: list[str], location: Path) -> str | None:
    """The rerun's folder named on the command line; never the run being reproduced (nor a folder
    inside it), which is the one copy the rerun is compared with."""
    from resnet_lab.errors import ConfigError

    new_dir = next((o.split("=", 1)[1] for o in extra if o.startswith("hydra.run.dir=")), None)
    original = location.parent.parent if location.is_file() and location.parent.name == "checkpoints" else location
    if new_dir is not None and Path(new_dir).expanduser().absolute().resolve().is_relative_to(original.resolve()):
        raise ConfigError(f"hydra.run.dir={new_dir} is the run being reproduced; a rerun goes into a folder of its own (drop hydra.run.dir or name a new one)")
    return new_dir


if __name__ == "__main__":
    main()
