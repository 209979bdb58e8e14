"""How fast the CLI answers: whole processes timed, median of several runs per command.

    python -m benchmarks.startup [--runs 7] [--out benchmarks/results]

Times `--help`, `--cfg job` and refused settings (a wrong group option, a value out of range, a
wrong type) of `python -m resnet_lab.train`, each as a fresh process from a scratch directory, and
lists the heavy packages each one imported (none is the goal: a config answer must not wait for
torch). Results go to <out>/<date>-cpu-startup.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "pytorch_grad_cam", "optuna", "wandb", "matplotlib")
COMMANDS = {
    "help": ["--help"],
    "cfg_job": ["--cfg", "job"],
    "bad_group_option": ["model=no_such_model"],
    "value_out_of_range": ["trainer.epochs=0"],
    "wrong_type": ["trainer.epochs=many"],
}


def heavy_imports(args: list[str], cwd: Path) -> list[str]:
    """The HEAVY packages a command imports (from `python -X importtime`)."""
    result = run(["-X", "importtime", "-m", "resnet_lab.train", *args], cwd)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return sorted(name for name in HEAVY if name in imported)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def time_command(args: list[str], cwd: Path, runs: int) -> dict:
    seconds, codes = [], set()
    for _ in range(runs):
        started = time.perf_counter()
        codes.add(run(["-m", "resnet_lab.train", *args], cwd).returncode)
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3), "max_s": round(max(seconds), 3), "exit_codes": sorted(codes)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="processes per command (the median is reported)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        results = {name: time_command(command, cwd, args.runs) | {"heavy_imports": heavy_imports(command, cwd)} for name, command in COMMANDS.items()}
    report = {
        "benchmark": "startup",
        "date": date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "gpu": None},
        "runs_per_command": args.runs,
        "commands": {name: " ".join(["python -m resnet_lab.train", *command]) for name, command in COMMANDS.items()},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{report['date']}-cpu-startup.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for name, result in results.items():
        spread = f"(min {result['min_s']:.2f}, max {result['max_s']:.2f})"
        print(f"{name:20s} median {result['median_s']:.2f} s  {spread}  heavy imports: {result['heavy_imports'] or 'none'}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
