"""Each part run safely, the machine, the targets judged, the table printed."""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from typing import Any, Callable

import torch

from benchmarks.cifar_speed.common import TARGETS


def run_part(runner: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One part's result, or its error: a part that breaks (on a GPU it has never met, say) is
    reported in the table and the JSON, and the parts after it still run."""
    start = time.perf_counter()
    try:
        result = runner()
    except Exception as error:  # noqa: BLE001 - recorded, then the next part runs
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {**result, "part_wall_s": time.perf_counter() - start}


def machine() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def machine_label(host: dict[str, Any], tiny: bool = False) -> str:
    """The machine's part of a result file's name (<date>-<label>-<benchmark>.json): its GPU, else
    cpu; `tiny` for CPU-test sizes, whatever the machine."""
    return "tiny" if tiny else (host["gpu"] or "cpu").lower().replace(" ", "-")


def judge(parts: dict[str, Any], applicable: bool) -> dict[str, Any]:
    """Each target with its measured value (None where the part did not run). The targets are
    for full-size runs on a GPU; elsewhere values are listed but not judged (met: None)."""
    speed, air, base, bare, sweep = (parts.get(k, {}) for k in ("speedrun", "airbench", "baseline", "bare", "sweep"))
    measured: dict[str, float | None] = {
        "speedrun_time_vs_airbench": speed["time_s"]["mean"] / air["time_s"]["mean"] if "time_s" in speed and "time_s" in air else None,
        "epoch_s": speed.get("epoch_s"),
        "framework_vs_bare": bare.get("ratio"),
        "speedup_to_seed_accuracy": None,
        "sweep_vs_8_trials": sweep.get("ratio"),
    }
    if base.get("reached_seed_accuracy") and "runs" in speed:
        measured["speedup_to_seed_accuracy"] = base["reached_seed_accuracy"]["time_s"] / speed["time_s"]["mean"]
    verdicts = {}
    for key, limit in TARGETS.items():
        value = measured[key]
        met = None if value is None or not applicable else (value >= limit if key == "speedup_to_seed_accuracy" else value <= limit)
        verdicts[key] = {"value": value, "target": limit, "met": met}
    if "accuracy" in speed and "accuracy" in air:
        verdicts["speedrun_reaches_airbench_accuracy"] = {
            "value": speed["accuracy"]["mean"],
            "target": air["accuracy"]["mean"],
            "met": speed["accuracy"]["mean"] >= air["accuracy"]["mean"] if applicable else None,
        }
    return verdicts


def table(result: dict[str, Any]) -> str:
    parts = result["parts"]
    rows = ["| part | accuracy | time (s) | per epoch (s) | peak GPU memory (GiB) |", "|---|---|---|---|---|"]

    def fmt(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    def seeded(label: str, part: dict[str, Any], extra_time: str, epoch: str) -> str:
        accuracy = part["accuracy"]
        return (
            f"| {label} ({accuracy['n']} seeds) | {100 * accuracy['mean']:.2f} ± {100 * accuracy['std']:.2f}% | "
            f"{part['time_s']['mean']:.2f}{extra_time} | {epoch} | {fmt(part['peak_memory_gib'])} |"
        )

    if "runs" in parts.get("speedrun", {}):
        s = parts["speedrun"]
        rows.append(seeded("speedrun (custom ResNet)", s, f" (+{s['warmup_s']:.1f} warm-up)", fmt(s["epoch_s"], ".3f")))
    if "runs" in parts.get("airbench", {}):
        rows.append(seeded(f"airbench94 {parts['airbench']['version']}", parts["airbench"], "", "-"))
    if "history" in parts.get("baseline", {}):
        b = parts["baseline"]
        reached = b["reached_seed_accuracy"]
        note = f"80.63% at epoch {reached['epoch']}" if reached else f"{100 * b['final_accuracy']:.2f}% after {len(b['history'])} epochs"
        rows.append(f"| seed-style baseline (DataLoader, fp32) | {note} | {b['time_s']:.1f} | {b['epoch_s']:.2f} | {fmt(b['peak_memory_gib'])} |")
    if "ratio" in parts.get("bare", {}):
        b = parts["bare"]
        rows.append(
            f"| bare loop vs framework | - | - | {b['bare_epoch_s']:.3f} vs {b['framework_epoch_s']:.3f} (x{b['ratio']:.3f}) | {fmt(b['peak_memory_gib'])} |"
        )
    if "ratio" in parts.get("sweep", {}):
        w = parts["sweep"]
        rows.append(
            f"| sweep, {w['trials']} trials in one process | - | {w['total_s']:.1f} vs {w['trials']} x {w['one_trial_s']:.1f} "
            f"(x{w['ratio']:.2f}; {w['recompiles']} recompiles, {w['data_reads']} data read) | - | - |"
        )
    if "epoch_wall_s" in parts.get("profile", {}):
        p = parts["profile"]
        device = (
            f"kernels {p['kernel_s']:.3f} + gaps {p['gap_s']:.3f} ({100 * p['gpu_busy']:.0f}% busy, {p['kernels']} kernels, "
            f"{fmt(p['achieved_tflops'], '.0f')} TFLOP/s); "
            if "kernel_s" in p
            else ""
        )
        rows.append(f"| profile: one epoch | - | {device}host in ops {p['host_in_ops_s']:.3f}, Python {p['host_python_s']:.3f} | {p['epoch_wall_s']:.3f} | - |")
    rows += [f"| {name}: skipped ({part['skipped']}) | - | - | - | - |" for name, part in parts.items() if "skipped" in part]
    rows += [f"| {name}: FAILED ({part['error'][:200]}) | - | - | - | - |" for name, part in parts.items() if "error" in part]
    lines = [
        f"{result['machine']['gpu'] or 'CPU'}, torch {result['machine']['torch']}, commit {(result['commit'] or '?')[:8]}, {result['date']}",
        "",
        *rows,
        "",
    ]
    for key, verdict in result["targets"].items():
        state = {True: "met", False: "NOT met", None: "not judged" if verdict["value"] is not None else "not measured"}[verdict["met"]]
        lines.append(f"- {key}: {fmt(verdict['value'], '.3f')} (target {verdict['target']:.4g}): {state}")
    return "\n".join(lines)
