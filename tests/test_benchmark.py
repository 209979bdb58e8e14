"""The speed benchmark at CPU size, so that it cannot rot while no GPU is at hand."""

from __future__ import annotations

import json

import pytest

from benchmarks import cifar_speed
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
    assert sweep["trials"] == 2 and len(sweep["trial_wall_s"]) == 2 and sweep["recompiles"] == 0
    assert parts["airbench"] == {"skipped": "airbench94 runs only on CUDA"}
    assert parts["profile"] == {"skipped": "kernel timing needs CUDA"}
    assert saved["targets"]["framework_vs_bare"]["value"] == pytest.approx(parts["bare"]["ratio"])
    assert "| speedrun (custom ResNet) (2 seeds) |" in result["table"]


def test_unknown_part_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cifar_speed.main(["--parts", "speedrun,warp", "--data", str(tmp_path)])
    assert stopped.value.code == 2
    assert "unknown part(s) warp; allowed: speedrun, airbench, baseline, bare, sweep, profile" in capsys.readouterr().err
