"""The CLI answers --help, --cfg and refused settings before any heavy package is imported
(timings: benchmarks/startup.py; a unit test only checks what was imported, never the clock)."""

from __future__ import annotations

import pytest

from benchmarks.startup import COMMANDS, heavy_imports, run

pytestmark = pytest.mark.slow  # every test here starts a command or trains


@pytest.mark.parametrize("name", list(COMMANDS))
def test_config_answers_import_no_heavy_package(name, tmp_path):
    assert heavy_imports(COMMANDS[name], tmp_path) == []


@pytest.mark.parametrize("name, code", [("help", 0), ("cfg_job", 0), ("bad_group_option", 2), ("value_out_of_range", 2), ("wrong_type", 2)])
def test_each_answer_is_its_exit_code_and_errors_are_one_line(name, code, tmp_path):
    result = run(["-m", "resnet_lab.train", *COMMANDS[name]], tmp_path)
    assert result.returncode == code, result.stderr
    if code:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr


def test_help_lists_the_groups_a_user_chooses_from_with_what_each_sets(tmp_path):
    result = run(["-m", "resnet_lab.train", "--help"], tmp_path)
    assert result.returncode == 0 and "schema/" not in result.stdout
    assert "optimizer: adam, adamw, sgd\n    the optimizer: its decay" in result.stdout
    assert "experiment_optimizer" not in result.stdout, "specialisations are not a choice of their own"
    assert "experiment: default, quick, seed_replica, speedrun" in result.stdout and "trainer:\n" in result.stdout
