"""`python -m benchmarks.cifar_speed` itself: arguments, the parts in order, the results file."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.cifar_speed.bare_loop import run_bare
from benchmarks.cifar_speed.baseline import run_baseline
from benchmarks.cifar_speed.common import (
    DEFAULT_DATA,
    FULL,
    PARTS,
    REPO,
    TINY,
    Scale,
    image_folder,
    tiny_on,
)
from benchmarks.cifar_speed.kernel_profile import run_profile
from benchmarks.cifar_speed.report import judge, machine, run_part, table
from benchmarks.cifar_speed.speedrun import run_speedrun
from benchmarks.cifar_speed.sweep import run_sweep
from benchmarks.cifar_speed.versus_airbench import run_airbench, write_airbench_files
from resnet_lab.train.environment import git_commit

DESCRIPTION = "The framework's speed, side by side, on one GPU."


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cifar_speed", description=DESCRIPTION)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or the JPEG-copy tarball")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--seeds", type=int, help="seeds for speedrun and airbench (default 5; tiny 2)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results JSON")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: 1/8-width net, 2 epochs, 2 trials (for tests)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for every framework part, as on the command line (repeatable), e.g. --override trainer.compile=reduce_overhead",
    )
    args = parser.parse_args(argv)
    parts_wanted = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts_wanted) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist (pass the image-folder root or cifar10-jpeg.tar.gz)")
    if not args.tiny and not torch.cuda.is_available():
        print("error: the full benchmark needs a CUDA GPU and none is visible; --tiny runs every part at CPU size", file=sys.stderr)
        raise SystemExit(2)
    scale = TINY if args.tiny else FULL
    if args.override:
        scale = Scale(**{**scale.__dict__, "extra": (*scale.extra, *args.override)})
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        scale = Scale(**{**scale.__dict__, "seeds": args.seeds})

    with tempfile.TemporaryDirectory(prefix="cifar_speed_") as scratch:
        work = Path(scratch)
        root = image_folder(args.data, work / "data")
        if args.tiny:
            scale = tiny_on(root, scale)
        parts: dict[str, Any] = {}
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "speedrun": lambda: run_speedrun(root, scale),
            "airbench": lambda: run_airbench(write_airbench_files(root, scale, work / "airbench"), scale),
            "baseline": lambda: run_baseline(root, scale),
            "bare": lambda: run_bare(root, scale),
            "sweep": lambda: run_sweep(root, scale, work / "sweeps"),
            "profile": lambda: run_profile(root, scale),
        }
        result = {
            "date": date.today().isoformat(),
            "commit": git_commit(),
            "machine": machine(),
            "scale": scale.__dict__,
            "data": str(args.data),
            "parts": parts,
        }
        gpu = re.sub(r"[^a-z0-9]+", "-", (result["machine"]["gpu"] or "cpu").lower()).strip("-")
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{result['date']}-{gpu}{'-tiny' if args.tiny else ''}.json"
        for name in parts_wanted:
            print(f"== {name}", flush=True)
            parts[name] = run_part(runners[name])
            # Written after every part: a run cut short by its time limit keeps what it measured.
            result["targets"] = judge(parts, applicable=torch.cuda.is_available() and not args.tiny)
            path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    result["table"] = table(result)
    print(result["table"])
    print(f"results: {path}")
    return result
