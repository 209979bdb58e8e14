"""Sweep reports: sweep_summary.json, trials.csv and PNG plots, for Optuna studies and for plain
`-m` grid multiruns alike (a grid's trials are read back from its job directories)."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from resnet_lab.errors import DataError
from resnet_lab.files import atomic_write, write_json
from resnet_lab.plotting import pyplot
from resnet_lab.trial import CURVE_ATTR, LR_KEY

log = logging.getLogger(__name__)

WD_KEY = "optimizer.weight_decay"


@dataclass
class TrialRecord:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_dir: str | None = None
    fail_reason: str | None = None
    curve: dict[int, float] = field(default_factory=dict)  # objective after each evaluated epoch (Optuna's intermediate values)
    values: list[float] | None = None  # every objective's value, in a study of several (value is the first)
    test_value: float | None = None  # beside a validation split: the trial's test accuracy, scored once at its end (never selected on)

    @property
    def score(self) -> float:
        """The value of a trial that has one (complete, or pruned with its last epoch's): the
        best pick and the plots read only such trials."""
        if self.value is None:
            raise ValueError(f"trial {self.number} ({self.state}) has no value")
        return self.value

    @property
    def objectives(self) -> list[float]:
        return self.values or []


@dataclass
class SweepReport:
    kind: str  # "optuna" or "grid"
    sweep_dir: str
    trials: list[TrialRecord]
    lr_suggestion: float | None = None
    study: dict[str, Any] = field(default_factory=dict)
    direction: str = "maximize"  # the study's (hydra.sweeper.direction); grid multiruns maximise accuracy
    pareto: list[int] = field(default_factory=list)  # with several objectives: the trials no other trial beats in all
    ranked_on: str | None = None  # the split the trials' values were measured on ("val" or "test"; None: not a resnet_lab run)

    @property
    def complete(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]

    def better(self, a: float, b: float) -> float:
        return max(a, b) if self.direction == "maximize" else min(a, b)

    def best(self) -> TrialRecord | None:
        pick = max if self.direction == "maximize" else min
        return pick(self.complete, key=lambda t: t.score, default=None)


def from_study(study, sweep_dir: Path, suggestion: float | None) -> SweepReport:
    """The trials this sweep directory ran (`<sweep dir>/<trial number>`), whichever worker ran
    them; other invocations of a continued study report in their own directories."""
    from resnet_lab.sweep.liveness import interrupted_reasons

    here = sweep_dir.resolve()
    interrupted = dict(interrupted_reasons(study))
    records = [
        TrialRecord(
            number=t.number,
            state=t.state.name,
            value=t.values[0] if t.values else None,
            params=dict(t.params),
            run_dir=t.user_attrs.get("run_dir"),
            fail_reason=t.user_attrs.get("fail_reason", interrupted.get(t.number)),
            curve={
                int(step): float(value)
                for step, value in sorted((t.intermediate_values or t.user_attrs.get(CURVE_ATTR) or {}).items(), key=lambda kv: int(kv[0]))
            },
            values=list(t.values) if t.values and len(t.values) > 1 else None,
            test_value=_test_value(Path(t.user_attrs["run_dir"])),
        )
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("run_dir") and Path(t.user_attrs["run_dir"]).parent == here
    ]
    direction = study.directions[0].name.lower()  # several objectives: the report ranks by the first
    here_numbers = {r.number for r in records}
    pareto = sorted(t.number for t in study.best_trials if t.number in here_numbers) if len(study.directions) > 1 else []
    ranked_on = study.user_attrs.get("selected_on")
    return SweepReport("optuna", str(sweep_dir), records, suggestion, {"study_name": study.study_name}, direction, pareto, ranked_on)


def evaluated_accuracy(run_dir: Path) -> dict[int, float]:
    """A run's evaluation accuracy after each evaluated epoch, from its metrics.csv (empty when
    it has none)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return {}
    return {int(row["epoch"]): float(row["eval_acc"]) for row in rows if row.get("eval_acc") not in (None, "", "nan")}


def _curve(run_dir: Path, final: float) -> dict[int, float]:
    """A grid job's objective after each evaluated epoch, as an Optuna trial's intermediate
    values: the last epoch's is the job's objective, with TTA when the run used it."""
    curve = evaluated_accuracy(run_dir)
    if curve:
        curve[max(curve)] = float(final)
    return curve


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _test_value(run_dir: Path) -> float | None:
    """A run's test accuracy when it selected on a validation split (TTA when the run used it)."""
    test = _summary(run_dir).get("test") or {}
    value = test.get("tta_acc") if test.get("tta_acc") is not None else test.get("acc")
    return None if value is None else float(value)


def from_job_dirs(sweep_dir: Path) -> SweepReport:
    """A grid multirun: each numbered job directory's overrides and summary.json (as absolute
    folders, like an Optuna sweep's, however the sweep folder was named)."""
    sweep_dir = sweep_dir.resolve()
    records = []
    splits: set[str] = set()
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not jobs:
        raise DataError(f"{sweep_dir} holds no sweep: no study.json and no numbered job folders; pass a multirun/<date>/<time> directory")
    for job in jobs:
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = [str(item) for item in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
        params = dict(item.split("=", 1) for item in overrides if "=" in item and not item.startswith("hydra"))
        params = {key: _number(value) for key, value in params.items()}
        summary = _summary(job)
        if summary:
            value = summary.get("objective", summary["final"]["eval_acc"])  # summaries before TTA have no objective
            records.append(TrialRecord(int(job.name), "COMPLETE", value, params, str(job), curve=_curve(job, value), test_value=_test_value(job)))
            splits.add(str(summary.get("eval_split", "test")))
        else:
            records.append(TrialRecord(int(job.name), "FAIL", None, params, str(job), "no summary.json: the job failed or is unfinished"))
    # Jobs of one multirun may differ in data.val_fraction: then they were scored on different splits.
    return SweepReport("grid", str(sweep_dir), records, ranked_on="/".join(sorted(splits)) or None)


def _number(text: str) -> Any:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def write_report(report: SweepReport, study=None, plots: bool = True) -> list[Path]:
    """Writes the summary, the CSV and (unless `plots` is off) the plots into the sweep directory;
    returns the plots. Drawing them costs about a second (matplotlib, and Optuna's importance
    evaluator); `python -m resnet_lab.sweep_report <dir>` draws them later."""
    out = Path(report.sweep_dir)
    best = report.best()
    write_json(
        out / "sweep_summary.json",
        {
            "kind": report.kind,
            **report.study,
            "lr_finder_suggestion": report.lr_suggestion,
            "n_trials": len(report.trials),
            "n_complete": len(report.complete),
            "n_failed": sum(t.state == "FAIL" for t in report.trials),
            "n_pruned": sum(t.state == "PRUNED" for t in report.trials),
            "ranked_on": report.ranked_on,
            "best": asdict(best) if best else None,
            "pareto_front": [asdict(t) for t in report.trials if t.number in report.pareto],
            "trials": [asdict(t) for t in report.trials],
        },
    )
    _write_csv(out / "trials.csv", report.trials)
    made = _plot_all(report, study, out) if plots else []
    test = "" if best is None or best.test_value is None else f" (its test accuracy, never selected on: {best.test_value:.4f})"
    ranked = f" on {report.ranked_on}" if report.ranked_on else ""
    log.info("sweep report: %d trials (%d complete), best%s %s%s -> %s", len(report.trials), len(report.complete), ranked, best and best.value, test, out)
    return made


def _plot_all(report: SweepReport, study, out: Path) -> list[Path]:
    plots: list[Path | None] = [_plot_history(report, out / "optimization_history.png")]
    if any(t.curve for t in report.trials):
        plots.append(_plot_curves(report, out / "learning_curves.png"))
    if any(t.values for t in report.trials):
        plots.append(_plot_pareto(report, out / "pareto_front.png"))
    if report.kind == "optuna":
        plots.append(_plot_lr_wd(report, out / "max_lr_vs_weight_decay.png"))
        if study is not None:
            plots.append(_plot_importances(study, {t.number for t in report.complete}, out / "param_importances.png"))
    else:
        plots.append(_plot_accuracy_vs_lr(report, out / "accuracy_vs_max_lr.png"))
    return [p for p in plots if p is not None]


def _write_csv(path: Path, trials: list[TrialRecord]) -> None:
    keys = sorted({k for t in trials for k in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", "test_value", *keys, "run_dir", "fail_reason"])
    for t in trials:
        writer.writerow([t.number, t.state, t.value, t.test_value, *(t.params.get(k) for k in keys), t.run_dir, t.fail_reason])
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def _legend(axis) -> None:
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="best")


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return path


def _plot_history(report: SweepReport, path: Path) -> Path:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    done = sorted(report.complete, key=lambda t: t.number)
    if done:
        axis.scatter([t.number for t in done], [100 * t.score for t in done], label="trial accuracy")
        running, best = [], done[0].score
        for t in done:
            best = report.better(best, t.score)
            running.append(100 * best)
        axis.step([t.number for t in done], running, where="post", color="tab:red", label="best so far")
    failed = [t for t in report.trials if t.state == "FAIL"]
    if failed:
        axis.scatter([t.number for t in failed], [0] * len(failed), marker="x", color="black", label="failed")
    pruned = [t for t in report.trials if t.state == "PRUNED" and t.value is not None]
    if pruned:
        axis.scatter([t.number for t in pruned], [100 * t.score for t in pruned], marker="v", color="grey", label="pruned (at its last epoch)")
    axis.set(xlabel="trial", ylabel="final eval accuracy (%)", title="optimisation history")
    axis.grid(alpha=0.3)
    _legend(axis)
    return _save(figure, path)


def _plot_curves(report: SweepReport, path: Path) -> Path:
    """Each trial's objective epoch by epoch; trials that did not complete end in a cross."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for t in sorted(report.trials, key=lambda t: t.number):
        if not t.curve:
            continue
        epochs, values = list(t.curve), [100 * v for v in t.curve.values()]
        line = axis.plot(epochs, values, marker=".", alpha=0.8, label=f"trial {t.number}" if len(report.trials) <= 10 else None)[0]
        if t.state != "COMPLETE":
            axis.plot(epochs[-1:], values[-1:], marker="x", markersize=9, color=line.get_color())
    axis.set(xlabel="epoch", ylabel="eval accuracy (%)", title="learning curves (x: trial pruned or failed)")
    axis.grid(alpha=0.3)
    _legend(axis)
    return _save(figure, path)


def _plot_pareto(report: SweepReport, path: Path) -> Path:
    """Accuracy against the second objective; the Pareto front's trials joined and labelled."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    done = [t for t in report.complete if t.values]
    axis.scatter([t.objectives[1] for t in done], [100 * t.objectives[0] for t in done], color="tab:grey", label="trial")
    front = sorted((t for t in done if t.number in report.pareto), key=lambda t: t.objectives[1])
    if front:
        axis.plot([t.objectives[1] for t in front], [100 * t.objectives[0] for t in front], marker="o", color="tab:red", label="Pareto front")
        for t in front:
            axis.annotate(str(t.number), (t.objectives[1], 100 * t.objectives[0]), textcoords="offset points", xytext=(4, 4))
    axis.set(xlabel="second objective (training seconds or epochs)", ylabel="final eval accuracy (%)", title="Pareto front")
    axis.grid(alpha=0.3)
    _legend(axis)
    return _save(figure, path)


def _plot_lr_wd(report: SweepReport, path: Path) -> Path | None:
    plt = pyplot()
    done = [t for t in report.complete if LR_KEY in t.params and WD_KEY in t.params]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    if done:
        points = axis.scatter([t.params[LR_KEY] for t in done], [t.params[WD_KEY] for t in done], c=[100 * t.score for t in done], cmap="viridis", s=60)
        figure.colorbar(points, ax=axis, label="final eval accuracy (%)")
    failed = [t for t in report.trials if t.state == "FAIL" and LR_KEY in t.params]
    if failed:
        axis.scatter([t.params[LR_KEY] for t in failed], [t.params.get(WD_KEY, float("nan")) for t in failed], marker="x", color="red", label="failed")
    if report.lr_suggestion:
        axis.axvline(report.lr_suggestion, color="tab:green", linestyle="--", label=f"LR-finder suggestion {report.lr_suggestion:.3g}")
    axis.set(xscale="log", yscale="log", xlabel="max_lr", ylabel="weight_decay", title="max_lr vs weight_decay")
    axis.grid(alpha=0.3, which="both")
    _legend(axis)
    return _save(figure, path)


def _plot_importances(study, numbers: set[int], path: Path) -> Path | None:
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.number in numbers and t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        log.info("parameter importances need >= 2 complete trials; skipped")
        return None
    importances = objective_importances(study.directions, complete)
    plt = pyplot()
    figure, axes = plt.subplots(1, len(importances), figsize=(7 * len(importances), 3), squeeze=False)
    for axis, (title, ranked) in zip(axes[0], importances.items()):
        names = list(ranked)[::-1]
        axis.barh(names, [ranked[n] for n in names], color="tab:blue")
        axis.set(xlabel="importance (Optuna default evaluator)", title=title)
    return _save(figure, path)


def objective_importances(directions: list, trials: list) -> dict[str, dict[str, float]]:
    """Parameter importances of each objective, for a good value of it. Optuna's default
    evaluator ranks parameters by what makes its target low, so a maximised objective is negated."""
    import optuna

    previous = logging.getLogger("optuna").level
    logging.getLogger("optuna").setLevel(logging.WARNING)  # the scratch study below is no news to the user
    try:
        scratch = optuna.create_study(directions=directions)
    finally:
        logging.getLogger("optuna").setLevel(previous)
    scratch.add_trials(trials)
    result = {}
    for index, direction in enumerate(directions):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        ranked = optuna.importance.get_param_importances(scratch, target=lambda t, i=index, s=sign: s * t.values[i])
        result[f"importances for {'high' if sign < 0 else 'low'} objective {index}" if len(directions) > 1 else "parameter importances"] = ranked
    return result


def _plot_accuracy_vs_lr(report: SweepReport, path: Path) -> Path | None:
    done = [t for t in report.complete if isinstance(t.params.get(LR_KEY), (int, float))]
    if not done:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.scatter([t.params[LR_KEY] for t in done], [100 * t.score for t in done], s=60)
    for t in done:
        axis.annotate(str(t.number), (t.params[LR_KEY], 100 * t.score), textcoords="offset points", xytext=(4, 4))
    axis.set(xscale="log", xlabel="max_lr", ylabel="final eval accuracy (%)", title="accuracy vs max_lr")
    axis.grid(alpha=0.3, which="both")
    return _save(figure, path)


def report_sweep_dir(sweep_dir: Path, storage: str | None = None) -> list[Path]:
    """Rebuild the report of a sweep directory: the trials it ran of an Optuna study (its
    study.json names the study and its storage, password masked: `storage` or the database
    driver's own sources supply it), or a grid multirun. A study that lived in memory is gone
    with its process; its job directories still hold every trial's overrides and summary."""
    study_file = sweep_dir / "study.json"
    if not study_file.is_file():
        return write_report(from_job_dirs(sweep_dir))
    saved = json.loads(study_file.read_text())
    url = storage or saved["storage"]
    if url is None:
        return write_report(from_job_dirs(sweep_dir))
    import optuna

    from resnet_lab.secrets import without_masked_password
    from resnet_lab.study_storage import open_storage

    study = optuna.load_study(study_name=saved["study_name"], storage=open_storage(without_masked_password(url)))
    return write_report(from_study(study, sweep_dir, saved.get("lr_finder_suggestion")), study)


def best_trial_dir(sweep_dir: Path) -> Path:
    """The run folder of a sweep's best complete trial (grid or Optuna), read from its
    sweep_summary.json, which is rebuilt from the folder first when it is missing."""
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} is not a directory; pass a multirun/<date>/<time> sweep directory")
    summary_file = sweep_dir / "sweep_summary.json"
    if not summary_file.is_file():
        report_sweep_dir(sweep_dir)
    best = json.loads(summary_file.read_text()).get("best")
    if not best or not best.get("run_dir"):
        raise DataError(f"{sweep_dir} has no complete trial to rerun")
    return Path(best["run_dir"])
