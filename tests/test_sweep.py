"""Optuna sweeps through the real CLI: LR-finder window, resumable totals, failed trials, reports."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO, TINY, run_main, write_image_folder

pytestmark = pytest.mark.slow


def sweep(cwd: Path, name: str, *extra: str, epochs: int = 1, search: str = "optuna", storage: str = "sqlite:///studies/test.db"):
    root = cwd / "im"
    if not root.exists():
        write_image_folder(root, train_per_class=24, test_per_class=8)
    return run_main(
        "resnet_lab.train",
        "-m",
        f"hparams_search={search}",
        "data=image_folder",
        f"data.root={root}",
        *TINY,
        f"trainer.epochs={epochs}",
        "lr_finder.num_iter=30",
        f"hydra.sweep.dir={name}",
        f"hydra.sweeper.storage={storage}",
        *extra,
        cwd=cwd,
    )


def finished(cwd: Path, study_name: str = "resnet_lab") -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{cwd / 'studies' / 'test.db'}")
    return [t for t in study.trials if t.state.is_finished()]


def test_sweep_runs_reports_and_continues_to_the_total(tmp_path):
    first = sweep(tmp_path, "s1", "hydra.sweeper.n_trials=4")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "s1"
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["n_trials"] == 4 and summary["n_complete"] == 4 and summary["best"]["value"] is not None
    for plot in ("optimization_history.png", "max_lr_vs_weight_decay.png", "param_importances.png"):
        assert (out / plot).stat().st_size > 5_000, plot
    assert len((out / "trials.csv").read_text().splitlines()) == 5
    suggestion = json.loads((out / "lr_finder" / "lr_finder.json").read_text())["suggestion"]
    assert summary["lr_finder_suggestion"] == suggestion
    low, high = yaml.safe_load((out / "multirun.yaml").read_text())["hparams_search"]["max_lr_bounds"]
    assert low == pytest.approx(suggestion * 6, rel=1e-5) and high == pytest.approx(suggestion * 300, rel=1e-5)
    assert all(low <= t["params"]["scheduler.max_lr"] <= high for t in summary["trials"])
    assert {Path(t["run_dir"]).name for t in summary["trials"]} == {"0", "1", "2", "3"}

    again = sweep(tmp_path, "s2", "hydra.sweeper.n_trials=6")
    assert again.returncode == 0, again.stderr
    trials = finished(tmp_path)
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))
    assert len({t.params["scheduler.max_lr"] for t in trials}) == 6
    assert not (tmp_path / "s2" / "lr_finder").exists(), "the continued study must reuse its stored suggestion"
    assert "4 finished, 0 running elsewhere, of 6; launching 2 more" in again.stdout + again.stderr

    done = sweep(tmp_path, "s3", "hydra.sweeper.n_trials=6")
    assert done.returncode == 0 and len(finished(tmp_path)) == 6


def test_bounds_follow_a_named_lr_finder_json(tmp_path):
    given = tmp_path / "lr_finder.json"
    given.write_text(json.dumps({"suggestion": 0.02}))
    result = sweep(tmp_path, "named", "hydra.sweeper.n_trials=2", f"hparams_search.lr_finder_json={given}", "hparams_search.lr_window=[0.1,2]")
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((tmp_path / "named" / "multirun.yaml").read_text())
    assert saved["hparams_search"]["max_lr_bounds"] == [0.002, 0.04]
    assert saved["hydra"]["sweeper"]["params"]["scheduler.max_lr"] == "tag(log, interval(0.002, 0.04))"
    assert all(0.002 <= t.params["scheduler.max_lr"] <= 0.04 for t in finished(tmp_path))


def test_a_diverging_trial_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    (tmp_path / "studies").mkdir()
    study = optuna.create_study(study_name="diverge", storage=f"sqlite:///{tmp_path / 'studies' / 'test.db'}", direction="maximize")
    study.enqueue_trial({"scheduler.max_lr": 1e6, "optimizer.weight_decay": 1e-4})
    result = sweep(tmp_path, "d", "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=diverge", "hparams_search.max_lr_bounds=[0.01,0.1]")
    assert result.returncode == 0, result.stderr
    trials = sorted(finished(tmp_path, "diverge"), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "loss became nan" in trials[0].user_attrs["fail_reason"] and "lower scheduler.max_lr" in trials[0].user_attrs["fail_reason"]
    summary = json.loads((tmp_path / "d" / "sweep_summary.json").read_text())
    assert summary["n_failed"] == 1 and summary["trials"][0]["fail_reason"].startswith("training loss became nan")


def test_grid_multirun_gets_a_summary_and_the_report_cli_rebuilds_it(tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=4)
    result = run_main(
        "resnet_lab.train",
        "-m",
        "data=image_folder",
        f"data.root={tmp_path / 'im'}",
        *TINY,
        "trainer.epochs=1",
        "data.val_fraction=0.1",
        "scheduler.max_lr=0.01,0.05,0.1",
        "hydra.sweep.dir=grid",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary_file = tmp_path / "grid" / "sweep_summary.json"
    summary = json.loads(summary_file.read_text())
    assert summary["kind"] == "grid" and summary["n_complete"] == 3
    assert summary["ranked_on"] == "val" and all(t["test_value"] is not None for t in summary["trials"]), "ranked on validation, test beside"
    assert all(list(t["curve"]) == ["1"] and t["curve"]["1"] == t["value"] for t in summary["trials"]), "each job's curve, from its metrics.csv"
    assert [t["params"]["scheduler.max_lr"] for t in summary["trials"]] == [0.01, 0.05, 0.1]
    assert (tmp_path / "grid" / "accuracy_vs_max_lr.png").is_file()
    summary_file.unlink()
    rebuilt = run_main("resnet_lab.sweep_report", "grid", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(summary_file.read_text())["n_trials"] == 3
    missing = run_main("resnet_lab.sweep_report", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    again = run_main("resnet_lab.reproduce", "grid", "--best", "hydra.run.dir=best", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    best = summary["best"]
    assert f"best trial of {tmp_path / 'grid'}: {best['run_dir']}" in again.stdout
    rerun = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert rerun["max_lr"] == best["params"]["scheduler.max_lr"] and rerun["reproduced_from"] == best["run_dir"]
    evaluated = run_main("resnet_lab.evaluate", "grid", "--best", "--out", "ev", cwd=tmp_path)
    assert evaluated.returncode == 0 and f"best trial of {tmp_path / 'grid'}: {best['run_dir']}" in evaluated.stdout, evaluated.stderr
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["location"] == best["run_dir"]
    labelled = run_main("resnet_lab.predict", "grid", str(tmp_path / "im" / "test"), "--best", "--out", "pr", cwd=tmp_path)
    assert labelled.returncode == 0 and len((tmp_path / "pr" / "predictions.csv").read_text().splitlines()) == 1 + 12, labelled.stderr
    (tmp_path / "not-a-sweep").mkdir()
    refused = run_main("resnet_lab.sweep_report", "not-a-sweep", cwd=tmp_path)
    assert refused.returncode == 2 and "holds no sweep" in refused.stderr and refused.stderr.count("\n") == 1
    assert list((tmp_path / "not-a-sweep").iterdir()) == [], "nothing written"


@pytest.mark.parametrize("sampler", ["random", "grid"])
def test_other_samplers_by_override(tmp_path, sampler):
    result = sweep(
        tmp_path,
        sampler,
        "hydra.sweeper.n_trials=2",
        f"hydra/sweeper/sampler={sampler}",
        f"hydra.sweeper.study_name={sampler}",
        "hparams_search.max_lr_bounds=[0.01,0.04]",
    )
    assert result.returncode == 0, result.stderr
    trials = finished(tmp_path, sampler)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    if sampler == "grid":
        assert all(t.params["scheduler.max_lr"] in (0.01, 0.02, 0.04) for t in trials)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("storage", ["null", "sqlite:///studies/exact.db", "journal:///studies/exact.log"])
def test_every_storage_runs_exactly_the_trials_asked_for(tmp_path, storage):
    """In-memory storage (the plugin's default) once never stopped: the sweep counted its trials
    in a study of its own that the plugin's batches never filled. Each trial's evaluated epochs are
    its intermediate values (its learning curve), in the study and in the report. PostgreSQL:
    test_distributed_sweep."""
    extra = ["hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}", "hparams_search.max_lr_bounds=[0.01,0.1]", "trainer.eval_every=1"]
    result = sweep(tmp_path, "exact", *extra, epochs=2)
    assert result.returncode == 0, result.stderr
    jobs = sorted(p.name for p in (tmp_path / "exact").iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2"]
    summary = json.loads((tmp_path / "exact" / "sweep_summary.json").read_text())
    assert summary["n_trials"] == 3 and summary["n_complete"] == 3
    for trial in summary["trials"]:
        metrics = (Path(trial["run_dir"]) / "metrics.csv").read_text().splitlines()
        assert list(trial["curve"]) == ["1", "2"] and trial["curve"]["2"] == trial["value"], trial
        assert float(metrics[1].split(",")[header_index(metrics[0], "eval_acc")]) == pytest.approx(trial["curve"]["1"])
    assert (tmp_path / "exact" / "learning_curves.png").stat().st_size > 5_000
    if storage != "null":
        from resnet_lab.study_storage import open_storage

        url = storage.replace("///", f"///{tmp_path}/")
        trials = optuna.load_study(study_name="resnet_lab", storage=open_storage(url)).trials
        assert len(trials) == 3 and [list(t.intermediate_values) for t in trials] == [[1, 2]] * 3
        assert all(t.intermediate_values[2] == t.value for t in trials)


def header_index(header: str, name: str) -> int:
    return header.split(",").index(name)


def test_a_study_keeps_its_window_and_each_sweep_reports_its_own_trials(tmp_path):
    first_json, other_json = tmp_path / "first.json", tmp_path / "other.json"
    first_json.write_text(json.dumps({"suggestion": 0.02}))
    other_json.write_text(json.dumps({"suggestion": 0.05}))
    first = sweep(tmp_path, "w1", "hydra.sweeper.n_trials=2", f"hparams_search.lr_finder_json={first_json}")
    assert first.returncode == 0, first.stderr
    decay = finished(tmp_path)[0].distributions["optimizer.weight_decay"]
    sgd = yaml.safe_load((REPO / "conf" / "optimizer" / "sgd.yaml").read_text())["optimizer"]
    assert [decay.low, decay.high] == [float(v) for v in sgd["weight_decay_window"]] and decay.log, "weight decay is searched in the optimizer's own window"
    peak = finished(tmp_path)[0].distributions["scheduler.max_lr"]
    assert [peak.low, peak.high] == pytest.approx([0.02 * f for f in sgd["lr_window"]]) and peak.log, "max_lr: the suggestion times the optimizer's factors"

    refused = sweep(tmp_path, "w2", "hydra.sweeper.n_trials=4", f"hparams_search.lr_finder_json={other_json}")
    assert refused.returncode == 2
    error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "another search space" in error[0] and "hydra.sweeper.study_name" in error[0], refused.stderr
    assert len(finished(tmp_path)) == 2 and not any(p.is_dir() for p in (tmp_path / "w2").glob("*"))

    continued = sweep(tmp_path, "w3", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random")
    assert continued.returncode == 0, continued.stderr
    assert [t["number"] for t in json.loads((tmp_path / "w3" / "sweep_summary.json").read_text())["trials"]] == [2]

    nothing = sweep(tmp_path, "w4", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random")
    assert nothing.returncode == 0, nothing.stderr
    said = nothing.stdout + nothing.stderr
    assert "nothing to run" in said and "raise hydra.sweeper.n_trials" in said and "hydra.sweeper.study_name" in said

    (tmp_path / "w1" / "sweep_summary.json").unlink()
    rebuilt = run_main("resnet_lab.sweep_report", "w1", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    report = json.loads((tmp_path / "w1" / "sweep_summary.json").read_text())
    assert [t["number"] for t in report["trials"]] == [0, 1] and report["lr_finder_suggestion"] == 0.02


def test_two_multiruns_in_the_same_second_get_folders_of_their_own(tmp_path):
    """The default sweep folder is named by the second and claimed by `${resnet_lab_claim:}`; the
    same claimed folder asked twice (as two multiruns started together would) goes to the first,
    the second gets `-2`, and each job writes into its own multirun's folder."""
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=4)
    for _ in range(2):
        result = run_main(
            "resnet_lab.train",
            "-m",
            "data=image_folder",
            f"data.root={tmp_path / 'im'}",
            *TINY,
            "trainer.epochs=1",
            "scheduler.max_lr=0.05",
            "hydra.sweep.dir='${resnet_lab_claim:multirun/same-${now:%Y}}'",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
    year = sorted(p.name for p in (tmp_path / "multirun").iterdir())
    assert len(year) == 2 and year[1] == f"{year[0]}-2"
    for name in year:
        assert (tmp_path / "multirun" / name / "0" / "summary.json").is_file()
        assert json.loads((tmp_path / "multirun" / name / "sweep_summary.json").read_text())["n_trials"] == 1


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_median_pruner_stops_a_hopeless_trial_keeps_its_outputs_and_the_sweep_goes_on(tmp_path, kind):
    """Trial 0 learns; trial 1 (a max_lr of 1e-6, enqueued) stays at chance and the median of
    trial 0's epochs prunes it early; trial 2 still runs: the study ends with its total, and a
    continued sweep still reports and judges its new trial."""
    from resnet_lab.study_storage import open_storage

    (tmp_path / "studies").mkdir()
    url = f"sqlite:///{tmp_path / 'studies' / 'test.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'studies' / 'test.log'}"
    study = optuna.create_study(study_name="prune", storage=open_storage(url), direction="maximize")
    study.enqueue_trial({"scheduler.max_lr": 0.05, "optimizer.weight_decay": 1e-4})
    study.enqueue_trial({"scheduler.max_lr": 1e-6, "optimizer.weight_decay": 1e-4})
    pruning = ["hparams_search.pruner.kind=median", "hparams_search.pruner.startup_trials=1", "hparams_search.pruner.warmup_epochs=0"]
    settings = ["hydra.sweeper.study_name=prune", "hparams_search.max_lr_bounds=[0.01,0.1]", "logger=wandb", *pruning]
    result = sweep(tmp_path, "p", "hydra.sweeper.n_trials=3", *settings, epochs=4, storage=url)
    assert result.returncode == 0, result.stderr
    trials = sorted(optuna.load_study(study_name="prune", storage=open_storage(url)).trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"], [(t.state.name, t.intermediate_values) for t in trials]
    hopeless = trials[1]
    epoch = hopeless.user_attrs["pruned_at_epoch"]
    assert epoch < 4 and list(hopeless.intermediate_values) == list(range(1, epoch + 1))
    assert hopeless.intermediate_values[epoch] < trials[0].intermediate_values[epoch], "pruned for being below the median"
    run_dir = Path(hopeless.user_attrs["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["pruned"] is True and summary["pruned_at_epoch"] == epoch and summary["epochs"] == epoch
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + epoch and (run_dir / "checkpoints" / "last.pt").is_file()
    from resnet_lab.track.offline_run import read_offline_run

    logged = read_offline_run(next((run_dir / "wandb").glob("offline-run-*")))
    assert logged.exit_code == 0 and logged.summary["pruned"] is True and logged.summary["pruned_at_epoch"] == epoch
    report = json.loads((tmp_path / "p" / "sweep_summary.json").read_text())
    assert report["n_pruned"] == 1 and report["n_complete"] == 2 and report["n_failed"] == 0 and report["best"]["number"] != 1
    assert "failed" not in (report["trials"][1].get("fail_reason") or "")
    assert f"pruned after epoch {epoch}; rerun it to the end: python -m resnet_lab.reproduce {run_dir}" in result.stdout
    assert "Error executing job" not in result.stderr, "a pruned trial is a result, not a failed job"

    # Continued with one epoch per trial and another hopeless trial: its only epoch is below the
    # median, but a last epoch is never pruned (stopping there saves nothing), so it completes.
    optuna.load_study(study_name="prune", storage=open_storage(url)).enqueue_trial({"scheduler.max_lr": 1e-6, "optimizer.weight_decay": 1e-4})
    continued = sweep(tmp_path, "p-again", "hydra.sweeper.n_trials=4", *settings, epochs=1, storage=url)
    assert continued.returncode == 0, continued.stderr
    *_, added = sorted(optuna.load_study(study_name="prune", storage=open_storage(url)).trials, key=lambda t: t.number)
    assert added.number == 3 and list(added.intermediate_values) == [1]
    assert added.intermediate_values[1] < trials[0].intermediate_values[1], "below the median after its one epoch"
    assert added.state.name == "COMPLETE" and "pruned_at_epoch" not in added.user_attrs, (added.state.name, added.user_attrs)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["hparams_search.pruner.kind=median", "trainer.eval_every=0"], "needs evaluated epochs, but trainer.eval_every=0"),
        (
            ["hparams_search.pruner.kind=hyperband", "hparams_search.objectives=[accuracy,epochs]", "hydra.sweeper.direction=[maximize,minimize]"],
            "Optuna prunes single-objective studies only",
        ),
        (["hydra.sweeper.direction=minimize"], "does not fit hparams_search.objectives=['accuracy']: set hydra.sweeper.direction=['maximize']"),
        (["hparams_search.pruner.kind=percentile", "hparams_search.pruner.percentile=150"], "hparams_search.pruner.percentile=150.0 is not allowed"),
        (["hparams_search.pruner.kind=halving"], "hparams_search.pruner.kind"),
        (["hparams_search.pruner.kind=peak_halving", "hparams_search.pruner.keep_one_in=[2,1]"], "hparams_search.pruner.keep_one_in=[2, 1] is not allowed"),
        (
            ["hparams_search.pruner.kind=median", "hydra/launcher=joblib", "hydra.sweeper.storage=null"],
            "with JoblibLauncher: its jobs run in other processes and cannot reach an in-memory study",
        ),
        (["hparams_search.workers=0"], "hparams_search.workers=0 is not allowed"),
        (["hparams_search.workers=2", "hydra.sweeper.n_jobs=2"], "choose one, workers (always busy) or n_jobs"),
        (["hparams_search.workers=2", "hydra/launcher=joblib"], "JoblibLauncher would run every trial again elsewhere"),
    ],
)
def test_sweeps_that_cannot_work_are_refused_in_one_line_before_any_trial(tmp_path, settings, message):
    result = sweep(tmp_path, "refused", "hydra.sweeper.n_trials=2", "hparams_search.max_lr_bounds=[0.01,0.1]", *settings)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not list((tmp_path / "refused").glob("*/summary.json")), "no trial ran"


def test_two_objectives_give_a_pareto_front_of_accuracy_and_training_time(tmp_path):
    """The width is the front's cost knob (here two tiny widths, on the command line); each trial's
    cost is its steady-state training time and its learning curve is kept as an attribute."""
    widths = "model.width_multiplier=choice(0.0625,0.125)"
    result = sweep(tmp_path, "front", "hydra.sweeper.n_trials=4", "hparams_search.max_lr_bounds=[0.01,0.1]", widths, epochs=2, search="pareto")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="resnet_lab_pareto", storage=f"sqlite:///{tmp_path / 'studies' / 'test.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and len(study.trials) == 4
    for trial in study.trials:
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert trial.values == [summary["objective"], summary["steady_train_time_s"]]
        assert trial.params["model.width_multiplier"] in (0.0625, 0.125) and sorted(trial.user_attrs["curve"]) == ["1", "2"]
        assert "could not report" not in result.stderr
    report = json.loads((tmp_path / "front" / "sweep_summary.json").read_text())
    assert sorted(t["number"] for t in report["pareto_front"]) == sorted(t.number for t in study.best_trials) != []
    assert all(len(t["values"]) == 2 for t in report["trials"]) and (tmp_path / "front" / "pareto_front.png").stat().st_size > 5_000


def test_the_same_configuration_costs_the_same_within_5_percent_whatever_its_first_epoch_and_noise():
    """Two runs of one configuration: one paid 27 s of compilation and decoding in its first
    epoch, both met noise of up to 4% per epoch. Their summed times differ ~5x; the steady-state
    cost a Pareto sweep minimises differs by under 5%."""
    from resnet_lab.train.loop import EpochMetrics
    from resnet_lab.train.outputs import steady_train_time

    def history(first: float, noise: list[float]) -> list[EpochMetrics]:
        times = [first] + [0.5 * (1 + n) for n in noise]
        return [EpochMetrics(i + 1, 1.0, 0.5, 1.0, 0.5, 0.1, t, 100 / t) for i, t in enumerate(times)]

    cold, warm = history(27.5, [0.04, -0.03, 0.02, 0.0, -0.04, 0.03, 0.01]), history(0.6, [-0.02, 0.04, -0.04, 0.01, 0.03, 0.0, -0.01])
    assert sum(m.epoch_time_s for m in cold) > 4 * sum(m.epoch_time_s for m in warm)
    assert steady_train_time(cold) == pytest.approx(steady_train_time(warm), rel=0.05)
    assert steady_train_time(warm) == pytest.approx(8 * 0.5, rel=0.05)
    assert steady_train_time(history(3.0, [])) == 3.0, "one epoch is its own steady state"


def test_a_sweep_selects_on_held_out_images_records_each_trials_test_accuracy_and_never_mixes_splits(tmp_path):
    done = sweep(tmp_path, "held", "hparams_search.max_lr_bounds=[0.01,0.1]", "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr
    trials = finished(tmp_path)
    assert optuna.load_study(study_name="resnet_lab", storage=f"sqlite:///{tmp_path / 'studies' / 'test.db'}").user_attrs["selected_on"].startswith("val")
    for trial in trials:
        summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["eval_split"] == "val" and trial.value == pytest.approx(summary["objective"]), "the study sees validation values only"
        assert summary["test"]["images"] == 24 and 0 <= summary["test"]["acc"] <= 1
    report = json.loads((tmp_path / "held" / "sweep_summary.json").read_text())
    best = report["best"]
    assert report["ranked_on"].startswith("val") and best["test_value"] is not None and best["value"] == max(t.value for t in trials)
    mixed = sweep(tmp_path, "mixed", "hparams_search.max_lr_bounds=[0.01,0.1]", "hydra.sweeper.n_trials=3", "data.val_fraction=0")
    assert mixed.returncode == 2 and "selected its trials on val" in mixed.stderr and "would measure them on test" in mixed.stderr, mixed.stderr
    assert len(finished(tmp_path)) == 2


def test_parameter_importances_are_those_of_a_good_value_in_each_objectives_direction():
    """High values of the first objective are decided by `a` alone, low values by `b` alone: a
    maximised objective's importances name `a`, a minimised one's `b`, in a Pareto study too."""
    import numpy as np

    from resnet_lab.sweep.report import objective_importances

    rng = np.random.default_rng(0)
    drawn = [(float(a), float(b)) for a, b in rng.uniform(0, 1, (200, 2))]

    def trials(objectives: int) -> list:
        distributions = {name: optuna.distributions.FloatDistribution(0, 1) for name in "ab"}
        values = [1 + a if a > 0.8 else 0.5 * b for a, b in drawn]
        return [optuna.trial.create_trial(params={"a": a, "b": b}, distributions=distributions, values=[v] * objectives) for (a, b), v in zip(drawn, values)]

    up, down = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
    assert list(objective_importances([up], trials(1))["parameter importances"])[0] == "a"
    assert list(objective_importances([down], trials(1))["parameter importances"])[0] == "b"
    both = objective_importances([up, down], trials(2))
    assert [list(ranked)[0] for ranked in both.values()] == ["a", "b"]


def test_schedule_halving_rungs_end_with_the_recipe_and_keep_the_best_share():
    from resnet_lab.sweep.schedule_halving import rungs
    from resnet_lab.trial import promoted

    assert rungs(8, 1, 3) == [1, 3, 8] and rungs(5, 1, 3) == [1, 2, 5] and rungs(24, 2, 2) == [2, 3, 6, 12, 24] and rungs(1, 1, 3) == [1]
    assert promoted(0.2, [], 3, maximize=True), "the first trial at a rung goes on"
    assert promoted(0.5, [0.4, 0.1], 3, maximize=True) and not promoted(0.3, [0.4, 0.1], 3, maximize=True)
    assert [promoted(v, [0.9, 0.8, 0.7, 0.6, 0.5], 3, maximize=True) for v in (0.85, 0.75)] == [True, False], "2 of 6 go on"
    assert promoted(0.1, [0.4, 0.3], 3, maximize=False), "a minimised objective keeps its lowest"
    assert not promoted(0.5, [0.5], 3, maximize=True), "a tie goes to the trial that got there first"


def test_a_late_bloomer_is_judged_by_the_end_of_its_schedule_not_the_middle():
    """Two max_lr values under one-cycle: after epoch 1 of 3 the high one is still climbing (0.30
    against 0.55) but it ends better (0.80 against 0.70). The median pruner judges it at epoch 1
    and stops it; schedule halving judges every trial by the end of a complete schedule and
    keeps it."""
    from resnet_lab.trial import promoted

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    steady = study.ask()
    for epoch, value in ((1, 0.55), (2, 0.65), (3, 0.70)):
        steady.report(value, epoch)
    study.tell(steady, 0.70)
    bloomer = study.ask()
    bloomer.report(0.30, 1)
    assert bloomer.should_prune(), "the median pruner stops the late bloomer after epoch 1"
    assert promoted(0.80, [0.70], 3, maximize=True) and not promoted(0.70, [0.80], 3, maximize=True)


def test_schedule_halving_trains_complete_short_runs_and_lets_only_the_best_go_on(tmp_path):
    """Rungs of 1 and 3 epochs: every trial first trains a whole 1-epoch run in `<n>-e1`, judged
    by its final value there (recorded at step 1); the best third (at least the best) trains a
    whole 3-epoch run in `<n>` and completes, the others are PRUNED at epoch 1."""
    halving = ["hparams_search.pruner.kind=schedule_halving", "hparams_search.pruner.min_epochs=1", "hparams_search.pruner.reduction_factor=3"]
    done = sweep(tmp_path, "ladder", "hparams_search.max_lr_bounds=[0.005,0.5]", "hydra.sweeper.n_trials=4", *halving, epochs=3)
    assert done.returncode == 0, done.stderr
    trials = sorted(finished(tmp_path), key=lambda t: t.number)
    assert len(trials) == 4 and trials[0].state.name == "COMPLETE", "the first trial at a rung always goes on"
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED"}
    seen: list[float] = []
    for trial in trials:
        short = json.loads((tmp_path / "ladder" / f"{trial.number}-e1" / "summary.json").read_text())
        assert short["epochs"] == 1 and trial.intermediate_values[1] == pytest.approx(short["objective"])
        goes_on = sum(v >= trial.intermediate_values[1] for v in seen) < max(1, (len(seen) + 1) // 3)
        seen.append(trial.intermediate_values[1])
        if goes_on:
            full = json.loads((tmp_path / "ladder" / str(trial.number) / "summary.json").read_text())
            assert trial.state.name == "COMPLETE" and full["epochs"] == 3 and trial.value == pytest.approx(full["objective"])
            assert trial.user_attrs["run_dir"] == str(tmp_path / "ladder" / str(trial.number))
        else:
            assert trial.state.name == "PRUNED" and trial.user_attrs["pruned_at_epoch"] == 1 and not (tmp_path / "ladder" / str(trial.number)).exists()


def _finished(study: optuna.Study, curve: dict[int, float]) -> None:
    lr = optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.1}, distributions={"lr": lr}, value=curve[max(curve)], intermediate_values=curve))


def _reported(study: optuna.Study, curve: dict[int, float]) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    for epoch, value in curve.items():
        trial.report(value, epoch)
    return study.trials[trial.number]


def test_the_margin_pruner_keeps_a_late_bloomer_that_the_median_pruner_stops():
    """Under one-cycle, the trial with the highest good peak starts slowest and ends best. The
    margin pruner waits for the LR's peak (epoch 2 here), then allows a trial the lag that the
    near-best trial had: a second late bloomer goes on, a hopeless trial stops."""
    from resnet_lab.config.schema import PrunerConfig, PrunerKind
    from resnet_lab.trial import build_pruner

    study = optuna.create_study(direction="maximize")
    _finished(study, {1: 0.30, 2: 0.35, 3: 0.40, 4: 0.45})  # quick start, mediocre end
    _finished(study, {1: 0.28, 2: 0.33, 3: 0.38, 4: 0.44})
    _finished(study, {1: 0.15, 2: 0.25, 3: 0.38, 4: 0.60})  # the late bloomer: 0.10 behind at epoch 2, best at the end
    settings = PrunerConfig(kind=PrunerKind.margin, startup_trials=2, warmup_epochs=0, percentile=25.0, min_epochs=1, reduction_factor=3)
    margin = build_pruner(settings, judge_from=2)
    median = build_pruner(PrunerConfig(**{**vars(settings), "kind": PrunerKind.median}))

    bloomer = _reported(study, {1: 0.14, 2: 0.26})
    assert median.prune(study, bloomer), "the median of epoch 2 (0.33) is above it"
    assert not margin.prune(study, bloomer), "0.09 behind the leader at epoch 2: within the 0.10 the best trial trailed by"
    hopeless = _reported(study, {1: 0.12})
    assert not margin.prune(study, hopeless), "epoch 1 is before the LR's peak: not judged"
    hopeless = _reported(study, {1: 0.12, 2: 0.20})
    assert margin.prune(study, hopeless), "0.15 behind at epoch 2, more than any near-best trial trailed"


def test_peak_halving_waits_for_the_lrs_peak_then_keeps_the_better_half_at_each_rung():
    """Before the LR's peak (epoch 2 here) a high peak is still climbing: nothing is judged. At
    the peak, and at the one epoch after it, a trial goes on when it is in the better half of
    every trial that reached that epoch, stopped and running ones included; later epochs are
    not rungs."""
    from resnet_lab.config.schema import PrunerConfig, PrunerKind
    from resnet_lab.trial import build_pruner

    study = optuna.create_study(direction="maximize")
    _finished(study, {1: 0.30, 2: 0.35, 3: 0.40, 4: 0.45})
    _finished(study, {1: 0.28, 2: 0.33, 3: 0.38, 4: 0.44})
    _finished(study, {1: 0.15, 2: 0.25, 3: 0.38, 4: 0.60})
    settings = PrunerConfig(
        kind=PrunerKind.peak_halving, startup_trials=1, warmup_epochs=0, percentile=25.0, min_epochs=1, reduction_factor=3, keep_one_in=[2, 2]
    )
    pruner = build_pruner(settings, judge_from=2)
    median = build_pruner(PrunerConfig(**{**vars(settings), "kind": PrunerKind.median}))

    bloomer = _reported(study, {1: 0.10})
    assert median.prune(study, bloomer) and not pruner.prune(study, bloomer), "epoch 1 is before the LR's peak"
    bloomer = _reported(study, {1: 0.10, 2: 0.34})
    assert not pruner.prune(study, bloomer), "second of four at the peak: 1 in 2 go on, so 2 of 4"
    hopeless = _reported(study, {1: 0.12, 2: 0.20})
    assert pruner.prune(study, hopeless), "last of five at the peak (the running late bloomer counts too)"
    third = _reported(study, {1: 0.12, 2: 0.36, 3: 0.37})
    assert not pruner.prune(study, _reported(study, {1: 0.12, 2: 0.36})), "first at the peak"
    assert pruner.prune(study, third), "0.37 at epoch 3: below all three others there (0.40, 0.38, 0.38)"
    assert not pruner.prune(study, _reported(study, {1: 0.1, 2: 0.36, 3: 0.5, 4: 0.01})), "epoch 4 is past the rungs"
    assert pruner.prune(study, _reported(study, {1: 0.1, 2: float("nan")})), "a diverged trial stops at a rung"


def test_the_margin_pruner_judges_a_trial_only_against_trials_with_as_high_a_peak_lr():
    """A higher peak LR learns slower early: a trial with a higher peak than every finished
    trial is not judged by them, one with a lower peak is."""
    from resnet_lab.trial import learned_margin_prunes

    settled = ({1: 0.30, 2: 0.40, 3: 0.45}, 0.45, 0.01)  # a low peak, finished
    assert not learned_margin_prunes(0.20, 2, 0.4, [settled], maximize=True, startup=1), "a peak of 0.4 is not judged by one of 0.01"
    assert learned_margin_prunes(0.20, 2, 0.005, [settled], maximize=True, startup=1), "a lower peak is: it trails by 0.20"
    assert learned_margin_prunes(float("nan"), 2, 0.005, [settled], maximize=True, startup=1), "a diverged trial stops"
    assert not learned_margin_prunes(0.20, 2, 0.005, [settled], maximize=True, startup=2), "one finished trial is fewer than startup"


def test_the_margin_is_never_below_the_sampling_noise_of_the_validation_split():
    """With one finished trial the learned margin is 0, so any dip below it stops a trial; on
    500 validation images a 4.6-point dip at 55% is within chance (2 standard deviations of two
    accuracies' difference: 6.3 points), on 5,000 it is not (2 points)."""
    from resnet_lab.trial import learned_margin_prunes, sampling_noise

    assert sampling_noise(0.5, 500) == pytest.approx(2 * (2 * 0.25 / 500) ** 0.5) and sampling_noise(0.5, 0) == 0.0
    reference = ({6: 0.563, 7: 0.527, 8: 0.611}, 0.611, 2.2)
    assert learned_margin_prunes(0.517, 6, 1.6, [reference], maximize=True, startup=1), "no floor: 4.6 points behind a margin of 0"
    assert not learned_margin_prunes(0.517, 6, 1.6, [reference], maximize=True, startup=1, eval_images=500), "within the noise of 500 images"
    assert learned_margin_prunes(0.517, 6, 1.6, [reference], maximize=True, startup=1, eval_images=5000), "on 5,000 images the noise is 2 points"
    assert learned_margin_prunes(0.40, 6, 1.6, [reference], maximize=True, startup=1, eval_images=500), "16 points behind is not noise"


def test_the_lr_peaks_where_the_schedule_says():
    from resnet_lab.config.schema import AnnealStrategy, CosineConfig, OneCycleConfig, StepConfig
    from resnet_lab.optim.schedulers import peak_epoch

    onecycle = OneCycleConfig(max_lr=0.4, pct_start=0.25, div_factor=25.0, final_div_factor=1e4, anneal_strategy=AnnealStrategy.cos, three_phase=False)
    assert peak_epoch(onecycle, 8) == 2 and peak_epoch(onecycle, 10) == 3
    assert peak_epoch(CosineConfig(max_lr=0.4, warmup_epochs=1.5, min_lr=0.0), 10) == 2
    assert peak_epoch(StepConfig(max_lr=0.4, step_epochs=3, gamma=0.5), 10) == 0


@pytest.mark.parametrize("pruner", ["margin", "peak_halving"])
def test_a_pruned_sweep_judges_a_hopeless_trial_once_the_lr_has_peaked(tmp_path, pruner):
    """8 epochs of one-cycle with pct_start 0.25: the LR peaks after epoch 2, so a trial stuck at
    chance (max_lr 1e-6, enqueued) is stopped there, not after epoch 1, by either pruner that
    waits for the peak."""
    from resnet_lab.study_storage import open_storage

    (tmp_path / "studies").mkdir()
    url = f"sqlite:///{tmp_path / 'studies' / 'test.db'}"
    study = optuna.create_study(study_name="margin", storage=open_storage(url), direction="maximize")
    study.enqueue_trial({"scheduler.max_lr": 0.05, "optimizer.weight_decay": 1e-4})
    study.enqueue_trial({"scheduler.max_lr": 1e-6, "optimizer.weight_decay": 1e-4})
    pruning = [f"hparams_search.pruner.kind={pruner}", "hparams_search.pruner.startup_trials=1", "hparams_search.pruner.warmup_epochs=0"]
    settings = ["hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=margin", "hparams_search.max_lr_bounds=[0.01,0.1]", *pruning]
    result = sweep(tmp_path, "m", *settings, epochs=8, storage=url)
    assert result.returncode == 0, result.stderr
    learned, hopeless = sorted(optuna.load_study(study_name="margin", storage=url).trials, key=lambda t: t.number)
    assert learned.state.name == "COMPLETE" and learned.value > 0.6, "it learns (chance is 1/3)"
    assert hopeless.state.name == "PRUNED" and hopeless.user_attrs["pruned_at_epoch"] == 2 and list(hopeless.intermediate_values) == [1, 2]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_the_sweep_of_every_experiment_can_be_pruned_on_evaluated_epochs(experiment):
    """A pruner judges evaluated epochs: a sweep evaluates every epoch even where the recipe alone
    (quick, speedrun) evaluates only after the last, so a pruned sweep of it is not refused."""
    from hydra import compose, initialize_config_dir

    from resnet_lab.config.schema import PrunerKind
    from resnet_lab.sweep.optuna_sweeper import _checked_search

    with initialize_config_dir(str(REPO / "conf")):
        overrides = ["hparams_search=optuna", f"experiment={experiment}", "hparams_search.pruner.kind=margin"]
        config = compose("train", overrides=overrides, return_hydra_config=True)
    search = _checked_search(config, ["maximize"], "sqlite:///study.db")
    assert search is not None and PrunerKind(search.pruner.kind) == PrunerKind.margin and config.trainer.eval_every == 1
