"""The speed benchmark at CPU size, so that it cannot rot while no GPU is at hand."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import cifar_speed, lr_window, pruning_replay, sweep_overhead, sweep_pruning, sweep_quality
from conftest import write_image_folder


@pytest.mark.slow
def test_tiny_benchmark_runs_every_part_and_writes_its_json(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=16)
    result = cifar_speed.main(["--tiny", "--data", str(root), "--out", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / f"{result['date']}-cpu-tiny.json").read_text())
    parts = saved["parts"]
    assert set(parts) == set(cifar_speed.PARTS)
    assert saved["machine"]["torch"] and saved["commit"] is not None

    speedrun = parts["speedrun"]
    assert speedrun["accuracy"]["n"] == 2 and speedrun["accuracy"]["mean"] >= 0.6, "the speedrun learns (chance is 1/3)"
    assert speedrun["time_s"]["mean"] > 0 and speedrun["epoch_s"] > 0
    assert parts["baseline"]["final_accuracy"] >= 0.5 and parts["baseline"]["history"]
    assert 0.3 < parts["bare"]["ratio"] < 3, "the framework and the bare loop do the same work"
    sweep = parts["sweep"]
    assert sweep["trials"] == 2 and len(sweep["trial_wall_s"]) == 2 and sweep["recompiles"] == 0 and sweep["data_reads"] == 1
    assert parts["airbench"]["skipped"] == "airbench94 runs only on CUDA"
    assert not [name for name, part in parts.items() if "error" in part]
    profile = parts["profile"]
    assert 0 < profile["host_in_ops_s"] <= profile["epoch_wall_s"] and profile["host_ops"] > 0 and "kernel_s" not in profile
    assert profile["host_in_ops_s"] + profile["host_python_s"] == pytest.approx(profile["epoch_wall_s"])
    assert saved["targets"]["framework_vs_bare"]["value"] == pytest.approx(parts["bare"]["ratio"])
    assert "| speedrun (custom ResNet) (2 seeds) |" in result["table"] and "| profile: one epoch | - | host in ops" in result["table"]


def test_a_part_that_breaks_is_recorded_and_shown_as_failed(capsys):
    def broken() -> dict:
        raise RuntimeError("no kernel image is available for execution on the device")

    part = cifar_speed.run_part(broken)
    assert part["error"] == "RuntimeError: no kernel image is available for execution on the device" and part["part_wall_s"] >= 0
    assert "Traceback" in capsys.readouterr().err
    result = {"parts": {"speedrun": part}, "machine": {"gpu": "G", "torch": "t"}, "commit": None, "date": "d", "targets": {}}
    assert "| speedrun: FAILED (RuntimeError: no kernel image" in cifar_speed.table(result)


def test_covered_seconds_counts_overlapping_intervals_once():
    assert cifar_speed.covered_seconds([(0, 4e6), (1e6, 2e6), (3e6, 6e6), (10e6, 11e6)]) == 7.0
    assert cifar_speed.covered_seconds([]) == 0.0


def test_unknown_part_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cifar_speed.main(["--parts", "speedrun,warp", "--data", str(tmp_path)])
    assert stopped.value.code == 2
    assert "unknown part(s) warp; allowed: speedrun, airbench, baseline, bare, sweep, profile" in capsys.readouterr().err


def test_airbench_result_is_read_from_the_table_airbench_prints():
    """The row format comes from airbench's own printer (CPU-safe), not from a copy of it."""
    import contextlib
    import io

    from airbench.utils import print_training_details

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_training_details({"run": 0, "epoch": 9, "train_loss": 0.51, "train_acc": 0.93, "val_acc": 0.935}, is_final_entry=False)
        print_training_details({"epoch": "eval", "tta_val_acc": 0.9403, "total_time_seconds": 3.8312}, is_final_entry=True)
    assert cifar_speed.airbench_result(printed.getvalue()) == (0.9403, 3.8312)
    with pytest.raises(RuntimeError, match="no final 'eval' row"):
        cifar_speed.airbench_result("|  0  |  1  |\n")


def test_table_splits_a_gpu_epoch_into_kernels_gaps_and_host():
    """The CUDA branch of the report, which the CPU run above cannot reach."""
    profile = {
        "epoch_wall_s": 0.4,
        "host_in_ops_s": 0.25,
        "host_python_s": 0.15,
        "host_ops": 900,
        "achieved_tflops": 284.5,
        "kernel_s": 0.3,
        "gap_s": 0.1,
        "gpu_busy": 0.75,
        "kernels": 12000,
        "mean_gap_us": 8.3,
        "top_kernels": [],
    }
    result = {"parts": {"profile": profile}, "machine": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"}, "commit": "abc", "date": "2026-11-24"}
    result["targets"] = cifar_speed.judge(result["parts"], applicable=True)
    text = cifar_speed.table(result)
    assert "| profile: one epoch | - | kernels 0.300 + gaps 0.100 (75% busy, 12000 kernels, 284 TFLOP/s); host in ops 0.250, Python 0.150 | 0.400 |" in text
    assert text.startswith("NVIDIA H100 80GB HBM3, torch 2.11.0")


def test_tiny_keeps_a_big_image_tree_cpu_sized(tmp_path):
    big = write_image_folder(tmp_path / "big", train_per_class=200, test_per_class=100)
    small = write_image_folder(tmp_path / "small", train_per_class=24, test_per_class=8)
    assert (cifar_speed.tiny_on(big, cifar_speed.TINY).train_subset, cifar_speed.tiny_on(big, cifar_speed.TINY).test_subset) == (512, 256)
    assert cifar_speed.tiny_on(small, cifar_speed.TINY).train_subset is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_full_benchmark_is_refused_in_one_line_without_cuda(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cifar_speed.main(["--data", str(tmp_path)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: the full benchmark needs a CUDA GPU and none is visible; --tiny runs every part at CPU size\n"


@pytest.mark.slow
def test_tiny_pruning_benchmark_runs_its_sweeps_and_writes_its_json(tmp_path):
    """The unpruned sweep and schedule halving at CPU-test size, judged against each other (the
    always-busy workers it also runs are tested in tests/test_distributed_sweep.py)."""
    root = write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=16)
    result = sweep_pruning.main(["--tiny", "--data", str(root), "--trials", "4", "--sweeps", "none,schedule_halving", "--out", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / f"{result['date']}-tiny-sweep_pruning-none-schedule_halving.json").read_text())
    assert set(saved["sweeps"]) == {"none", "schedule_halving"} and saved["lr_suggestion"] > 0
    unpruned, halving = saved["sweeps"]["none"], saved["sweeps"]["schedule_halving"]
    assert unpruned["epochs"] == 8 and sorted(r["number"] for r in unpruned["runs"]) == [0, 1, 2, 3]
    assert all(len(r["curve"]) == r["epochs"] and "scheduler.max_lr" in r["params"] for r in unpruned["runs"]), "each run's curve, to replay pruners"
    assert halving["trials"] == 4 and halving["epochs"] == sum(r["epochs"] for r in halving["runs"]) == 4 + 2 * (halving["runs_trained"] - 4)
    for part in (unpruned, halving):
        assert part["best_accuracy"] >= 0.6 and 0 <= part["best_test_accuracy"] <= 1, "the trials learn (chance is 1/3)"
    judged = saved["judged"]["schedule_halving"]
    assert judged["epochs_vs_unpruned"] == halving["epochs"] / 8 and "| schedule_halving | 4 |" in saved["table"]


@pytest.mark.slow
def test_tiny_quality_benchmark_judges_each_sweeps_choice_against_the_oracle_grid(tmp_path):
    """The oracle trains every point of a 2 x 2 grid over the default search space; each sweep's
    regret is the oracle's test accuracy minus its choice's, and the pruned sweep's epochs are
    counted against the unpruned one of its seed; a pruner the benchmark does not know is refused."""
    root = write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=16)
    result = sweep_quality.main(
        ["--tiny", "--data", str(root), "--grid", "2", "--trials", "2", "--seeds", "0", "--pruned", "peak_halving", "--out", str(tmp_path / "out")]
    )
    saved = json.loads((tmp_path / "out" / f"{result['date']}-tiny-sweep_quality.json").read_text())
    assert list(saved["sweeps"]) == ["oracle", "none.seed0", "peak_halving.seed0"]
    oracle = saved["sweeps"]["oracle"]
    assert oracle["trials"] == 4 and len(saved["oracle_grid"]) == 2 and all(len(row) == 2 for row in saved["oracle_grid"].values())
    best_point = max(r["curve"][-1] for r in oracle["runs"])
    near = saved["oracle_near_best"]
    assert 1 <= near["points"] <= 4 and near["test_min"] <= oracle["best_test_accuracy"] <= near["test_max"], "the best point is among those near it"
    assert oracle["best_accuracy"] == best_point >= 0.6, "the oracle picks its best point by validation, and it learns (chance is 1/3)"
    for key in ("none.seed0", "peak_halving.seed0"):
        chosen = saved["sweeps"][key]["best_test_accuracy"]
        assert saved["judged"][key]["regret_points"] == pytest.approx(100 * (oracle["best_test_accuracy"] - chosen))
    pruned = saved["sweeps"]["peak_halving.seed0"]
    assert saved["judged"]["peak_halving.seed0"]["epochs_vs_unpruned"] == pruned["epochs"] / saved["sweeps"]["none.seed0"]["epochs"]
    assert "| peak_halving | 0 | 2 |" in saved["table"] and "| oracle | - | 4 | 8 |" in saved["table"]

    path = tmp_path / "out" / f"{result['date']}-tiny-sweep_quality.json"
    del saved["sweeps"]["peak_halving.seed0"]
    path.write_text(json.dumps(saved))
    resumed = sweep_quality.main(
        ["--tiny", "--data", str(root), "--grid", "2", "--trials", "2", "--seeds", "0", "--pruned", "peak_halving", "--resume", str(path)]
    )
    assert list(resumed["sweeps"]) == ["oracle", "none.seed0", "peak_halving.seed0"], "the deleted sweep ran again, in its place"
    assert all(resumed["sweeps"][key] == saved["sweeps"][key] for key in ("oracle", "none.seed0")), "the others are kept, not run again"
    assert json.loads(path.read_text())["judged"]["peak_halving.seed0"]["epochs_vs_unpruned"] == resumed["sweeps"]["peak_halving.seed0"]["epochs"] / 4

    with pytest.raises(SystemExit) as refused:
        sweep_quality.main(["--tiny", "--data", str(root), "--pruned", "peak_halving,asha"])
    assert refused.value.code == 2


def test_the_quality_result_reads_oracle_first_then_by_seed_unpruned_first():
    """A resumed run that added seeds 3 and 4 after seeds 0 and 1 still lists its sweeps in the
    table's order."""
    added = ["oracle", "none.seed3", "peak_halving.seed3", "none.seed0", "margin.seed0", "peak_halving.seed0", "none.seed1"]
    ordered = sweep_quality.in_order({key: {} for key in added})
    assert list(ordered) == ["oracle", "none.seed0", "peak_halving.seed0", "margin.seed0", "none.seed1", "none.seed3", "peak_halving.seed3"]


def test_idle_share_counts_the_slot_time_no_trial_ran():
    """Two slots over 10 s: a batch of a 10 s and a 4 s trial leaves one slot idle for 6 s."""
    assert sweep_pruning.idle_share([(0.0, 10.0), (0.0, 4.0)], slots=2) == pytest.approx(0.3)
    assert sweep_pruning.idle_share([(0.0, 10.0), (0.0, 4.0), (4.0, 10.0)], slots=2) == pytest.approx(0.0)
    assert sweep_pruning.idle_share([(0.0, 10.0), (0.0, 4.0), (5.0, 7.0)], slots=2, until=5.0) == pytest.approx(0.1)


def test_an_unknown_sweep_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_pruning.main(["--sweeps", "median,asha", "--data", str(tmp_path)])
    allowed = "none, median, hyperband, schedule_halving, margin, peak_halving, batch2, workers2"
    assert stopped.value.code == 2 and f"unknown sweep(s) asha; allowed: {allowed}" in capsys.readouterr().err


def test_the_sweep_overhead_benchmark_times_both_sweepers_and_real_trials(tmp_path):
    """At test size: one process of each sweeper per size, two tiny training trials."""

    sweep_overhead.main(["--runs", "1", "--trials", "3", "--real-trials", "2", "--out", str(tmp_path)])
    saved = json.loads(next(tmp_path.glob("*-cpu-sweep_overhead.json")).read_text())
    assert set(saved["trivial_app"]) == {"sqlite_3_trials", "sqlite_1_trials", "memory_3_trials", "memory_1_trials"}
    for size, row in saved["trivial_app"].items():
        assert row["ratio"] > 0 and (row["loop_ratio_per_trial"] > 0 if size.startswith("sqlite") else "loop_ratio_per_trial" not in row)
        assert {"resnet_lab", "plugin"} <= set(row) and row["resnet_lab"]["median_wall_s"] > 0
    real = saved["real_trials"]
    assert real["trials"] == 2 and len(real["gaps_between_trials_s"]) == 1 and real["median_gap_s"] >= 0


def test_the_lr_window_anchors_are_read_from_the_range_tests_curve():
    lrs = [10 ** (-4 + i / 4) for i in range(17)]  # 1e-4 .. 1
    losses = [2.3, 2.3, 2.2, 2.0, 1.6, 1.2, 1.0, 0.9, 0.8, 0.85, 1.0, 2.0, 3.3, 4.0, 9.0, 20.0, 40.0]
    found = lr_window.anchors({"lr": lrs, "loss": losses, "suggestion": lrs[5], "valley": lrs[5], "steepest": lrs[4]})
    assert found["loss_minimum"] == lrs[8] and found["divergence"] == lrs[12], "the first loss above 4x the minimum (0.8), after it"
    assert found["suggestion"] == found["valley"] == lrs[5] and found["steepest"] == lrs[4]
    assert lr_window.grid(0.01, 8)[0] == 0.001 and lr_window.grid(0.01, 8)[-1] == pytest.approx(3.0)
    assert lr_window.grid(0.01, 3, (600.0, 2400.0)) == [6.0, 12.0, 24.0], "a span above the default window"


def test_an_lr_window_span_that_is_not_low_then_high_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        lr_window.main(["--span", "300", "0.1", "--data", str(tmp_path)])
    assert refused.value.code == 2 and "--span 300 0.1: two factors with 0 < LOW < HIGH" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_lr_window_benchmark_grids_the_peak_then_resumed_the_weight_decay_at_it(tmp_path, capsys):
    root = write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=16)
    common = ["--tiny", "--data", str(root), "--optimizers", "sgd", "--seeds", "0", "--points", "3"]
    lr_window.main([*common, "--decay-points", "0", "--out", str(tmp_path / "out")])
    path = next((tmp_path / "out").glob("*-tiny-lr_window.json"))
    first = json.loads(path.read_text())
    sgd = first["optimizers"]["sgd"]
    peaks = [p["max_lr"] for p in sgd["peaks"]]
    assert peaks == lr_window.grid(sgd["anchors"]["suggestion"], 3) and all(len(p["val_accuracy"]) == 1 for p in sgd["peaks"])
    assert sgd["best_max_lr"] in peaks and sgd["best_mean_val_accuracy"] >= 0.6, "the best peak learns (chance is 1/3)"
    assert sgd["best_over_anchor"]["suggestion"] == pytest.approx(sgd["best_max_lr"] / sgd["anchors"]["suggestion"])
    assert first["weight_decay"] == {}

    lr_window.main([*common, "--decay-points", "3", "--resume", str(path)])
    resumed = json.loads(path.read_text())
    assert resumed["optimizers"] == first["optimizers"], "the peak grid is kept, not run again"
    decay = resumed["weight_decay"]["sgd"]
    assert decay["max_lr"] == sgd["best_max_lr"] and [row["optimizer.weight_decay"] for row in decay["decays"]] == [1e-6, 0.001, 1.0]
    assert decay["best_weight_decay"] in (1e-6, 0.001, 1.0) and decay["best_mean_val_accuracy"] >= 0.6

    with pytest.raises(SystemExit) as refused:
        lr_window.main([*common[:-4], "--seeds", "1", "--points", "3", "--resume", str(path)])
    assert refused.value.code == 2 and "ran another machine, recipe, seeds or grid" in capsys.readouterr().err


def test_the_pruning_replay_counts_the_epochs_each_rule_trains_and_the_best_it_keeps(tmp_path):
    """Five trials of 4 epochs, in the order they ran: a quick starter (low peak LR), a late
    bloomer (high peak) that ends best, a hopeless trial, a second late bloomer, a second quick
    starter. The median from epoch 1 stops the second late bloomer; the margin pruner from epoch
    2 judges the late bloomers only against trials with as high a peak, and stops only the
    hopeless trial; judged against every trial, it stops all but the first."""
    curves = [[0.30, 0.35, 0.40, 0.45], [0.15, 0.25, 0.38, 0.60], [0.12, 0.20, 0.22, 0.25], [0.14, 0.27, 0.40, 0.58], [0.28, 0.33, 0.38, 0.44]]
    peaks = [0.01, 0.4, 0.001, 0.35, 0.02]
    runs = [{"number": n, "curve": curve, "epochs": 4, "params": {"scheduler.max_lr": peak}} for n, (curve, peak) in enumerate(zip(curves, peaks))]
    source = tmp_path / "none.json"
    source.write_text(json.dumps({"machine": {"gpu": None}, "recipe": [], "sweeps": {"none": {"pruned": 0, "runs": runs}}}))
    result = pruning_replay.main([str(source)])
    rules = json.loads((tmp_path / "none-replay.json").read_text())["sweeps"]["none"]["rules"]
    assert rules == result["sweeps"]["none"]["rules"] and result["hindsight_bound"]["target_share"] == 0.4
    assert rules["median@1"] == {"epochs": 4 + 4 + 1 + 1 + 3, "share": 0.65, "best_kept": 0.60, "drop_points": 0.0, "pruned": 3}
    assert rules["margin@2"] == {"epochs": 4 + 4 + 2 + 4 + 4, "share": 0.9, "best_kept": 0.60, "drop_points": 0.0, "pruned": 1}
    assert rules["margin-any-peak@2"] == {"epochs": 4 + 2 + 2 + 2 + 2, "share": 0.6, "best_kept": 0.45, "drop_points": 15.0, "pruned": 4}

    pruning_replay.main([str(source), "--eval-images", "20"])
    floored = json.loads((tmp_path / "none-replay-floor20.json").read_text())["sweeps"]["none"]["rules"]
    assert floored["margin@2"]["pruned"] == 0, "on 20 images, 0.15 behind at 35% is within chance (0.30)"


def test_the_hindsight_bound_finds_the_cheapest_halving_that_keeps_every_best():
    """Two sweeps of 4 trials x 3 epochs. In the first the best trial blooms late, last at
    epochs 1 and 2: only keeping all four through both rungs keeps it, so no saving is
    lossless, and within half the epochs the least loss is 20 points (0.7 kept of 0.9). In the
    second the best leads from the start, and the cheapest rule keeps it; the bound is the worst
    over both."""
    late = [[0.5, 0.6, 0.7], [0.2, 0.3, 0.9], [0.4, 0.5, 0.6], [0.3, 0.4, 0.5]]
    early = [[0.5, 0.6, 0.9], [0.2, 0.3, 0.4], [0.4, 0.5, 0.6], [0.3, 0.4, 0.5]]
    assert pruning_replay.halving_keeps(late, ((1, 2), (2, 1))) == (4 + 2 + 1, 0.7)
    assert pruning_replay.halving_keeps(early, ((1, 1), (2, 1))) == (4 + 1 + 1, 0.9)
    bound = pruning_replay.hindsight_bound({"late": late, "early": early}, target_share=0.5)
    within, lossless = bound["least_loss_within_target"], bound["least_share_without_loss"]
    assert within["rungs"] == [[1, 1], [2, 1]] and within["worst_share"] == 0.5 and within["worst_drop_points"] == 20.0
    assert within["sweeps"]["early"] == {"share": 0.5, "drop_points": 0.0}
    assert lossless["rungs"] == [[1, 4], [2, 4]] and lossless["worst_share"] == 1.0
    assert pruning_replay.hindsight_bound({"a": late, "b": late[:3]}, 0.5) == {"skipped": "the sweeps differ in trials or epochs"}


def test_results_of_the_same_recipe_merge_and_are_judged_together_others_are_refused(tmp_path):
    def result(name: str, sweeps: dict, suggestion: float = 0.01):
        path = tmp_path / f"{name}.json"
        saved = {"date": "2026-12-05", "machine": {"gpu": None}, "recipe": ["a=1"], "trials": 4, "lr_suggestion": suggestion, "sweeps": sweeps}
        path.write_text(json.dumps(saved))
        return path

    def sweep(epochs: int, best: float) -> dict:
        idle = {"idle_share": 0.0, "idle_share_until_last_start": 0.0}
        return {"trials": 4, "epochs": epochs, "wall_s": 1.0, "best_accuracy": best, "best_test_accuracy": best, "pruned": 0, **idle}

    none = result("none", {"none.seed0": sweep(32, 0.60)})
    margin = result("margin", {"margin.seed0": sweep(12, 0.598)})
    merged = sweep_pruning.main(["--merge", str(none), str(margin), "--out", str(tmp_path / "out")])
    assert merged["merged_from"] == ["none.json", "margin.json"] and set(merged["sweeps"]) == {"none.seed0", "margin.seed0"}
    judged = merged["judged"]["margin.seed0"]
    assert judged["epochs_vs_unpruned"] == 12 / 32 and judged["epochs_met"] and judged["accuracy_met"], "0.2 points below, 37.5% of the epochs"
    assert (tmp_path / "out" / "2026-12-05-cpu-sweep_pruning-margin-none.json").is_file()
    with pytest.raises(SystemExit, match="not comparable"):
        sweep_pruning.main(["--merge", str(none), str(result("other", {}, suggestion=0.02)), "--out", str(tmp_path / "out")])
