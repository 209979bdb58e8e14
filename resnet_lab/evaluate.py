"""`python -m resnet_lab.evaluate <run dir | checkpoint.pt | W&B run or model artifact dir | sweep dir --best> [overrides...] [--out DIR]`

Evaluates a trained run's final weights (checkpoints/last.pt, the EMA weights when the run
evaluated them) on its evaluation split, or on other data given as overrides (e.g.
`data=image_folder data.root=<folder>`, `data.val_fraction=0.1`): top-1 and top-5 accuracy,
per-class accuracy and the confusion matrix, without and with the run's test-time augmentation.
The model and its preprocessing are rebuilt from the run's saved config, exactly as `reproduce`
rebuilds them, so on the run's own split the accuracy is the one the run recorded. Outputs go to
a folder of their own (default outputs/evaluate/<date>/<time>): evaluation.json,
confusion_matrix.csv and .png (and _tta versions). Nothing in the run is changed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Scores:
    top1: float
    top5: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class


def scores(logits, labels, classes: list[str]) -> Scores:
    from resnet_lab.explain.gradcam import confusion_matrix

    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    predicted = top[:, 0]
    confusion = confusion_matrix(predicted, labels, len(classes))
    per_class = {name: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else float("nan") for i, name in enumerate(classes)}
    n = len(labels)  # counts over n, as the training loop computes its accuracy
    return Scores(
        top1=int((predicted == labels).sum()) / n,
        top5=int((top == labels[:, None]).any(dim=1).sum()) / n,
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def evaluate(location: Path, extra: list[str]):
    """(typed config, what was evaluated, scores by TTA mode: 'none' and the run's own mode if it
    has one, what the run recorded at its end)."""
    import torch

    from resnet_lab.config.schema import TTAMode
    from resnet_lab.saved_run import rebuild, saved_run

    run, source, checkpoint, state = saved_run(location, extra)
    recorded = recorded_accuracy(checkpoint)  # a damaged summary.json is refused before the data is read
    evaluator, classes, eval_name = rebuild(run, checkpoint, state)
    modes = [TTAMode.none] + ([evaluator.tta] if evaluator.tta != TTAMode.none else [])
    results = {}
    for mode in modes:
        logits, labels = zip(*evaluator.predictions(evaluator.eval_loader, mode))
        results[mode.value] = scores(torch.cat(logits).float(), torch.cat(labels), classes)
    what = {"location": str(location), "config_from": source, "checkpoint": str(checkpoint), "split": eval_name, "images": len(evaluator.eval_loader.labels)}
    return run, what, results, recorded


def write_outputs(out: Path, what: dict, results: dict[str, Scores], recorded: dict | None) -> None:
    import numpy as np

    from resnet_lab.explain.gradcam import plot_confusion
    from resnet_lab.files import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", {**what, "recorded": recorded, "results": {mode: asdict(s) for mode, s in results.items()}})
    classes = list(next(iter(results.values())).per_class)
    for mode, result in results.items():
        stem = "confusion_matrix" if mode == "none" else f"confusion_matrix_{mode}"
        with open(out / f"{stem}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true \\ predicted", *classes])
            writer.writerows([name, *row] for name, row in zip(classes, result.confusion))
        plot_confusion(np.array(result.confusion), classes, out / f"{stem}.png", title=f"{what['split']}, TTA {mode}")


def track(run, out: Path, what: dict, results: dict[str, Scores]) -> None:
    """With a logger named on the command line: one W&B run of job_type `evaluate` beside the
    outputs, in the training run's group (its sweep folder, for a sweep's job), naming the run
    and checkpoint it evaluated, with the scores in its summary and the confusion matrices."""
    from resnet_lab.config.schema import LoggerKind
    from resnet_lab.track import Tracker
    from resnet_lab.track.offline_run import find_transaction_log
    from resnet_lab.train.checkpoint import run_dir_of

    if run.logger.kind == LoggerKind.none:
        return
    run_dir = run_dir_of(Path(what["checkpoint"]))
    group = str(run_dir.parent) if (run_dir.parent / "multirun.yaml").is_file() else None
    config = {**run.resolved(), "evaluated_run": str(run_dir), "evaluated_checkpoint": what["checkpoint"], "split": what["split"]}
    tracker = Tracker.start(run.logger, out, config, job_type="evaluate", name=f"evaluate {run_dir.name}", group=group)
    training_log = find_transaction_log(run_dir)
    if training_log is not None:
        tracker.use_model_of(training_log.stem.removeprefix("run-"))
    tracker.summarise({f"{mode}/{key}": getattr(result, key) for mode, result in results.items() for key in ("top1", "top5")})
    tracker.log_images({path.stem: path for path in sorted(out.glob("confusion_matrix*.png"))})
    tracker.finish(0)


def recorded_accuracy(checkpoint: Path) -> dict | None:
    """What the run recorded at its end (its summary.json), to set beside the evaluation of its
    final weights (last.pt; best.pt's weights were scored at an earlier epoch)."""
    from resnet_lab.errors import DataError
    from resnet_lab.train.checkpoint import LAST, run_dir_of

    summary = run_dir_of(checkpoint) / "summary.json"
    if checkpoint.name != LAST or not summary.is_file():
        return None
    try:
        final = json.loads(summary.read_text())["final"]
        return {"eval_acc": float(final["eval_acc"]), "tta_acc": None if final.get("tta_acc") is None else float(final["tta_acc"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{summary} is damaged ({type(error).__name__}: {error}); the run's recorded accuracy cannot be read") from None


def main(argv: list[str] | None = None) -> None:
    from resnet_lab.run_folder import claim_output_folder
    from resnet_lab.saved_run import command_line, one_line_errors, output_folder, run_location

    args, options, best = command_line(argv, __doc__)
    with one_line_errors():
        location = run_location(args[0], best)
        out = claim_output_folder(output_folder(options.get("--out"), "evaluate"))
    with one_line_errors(out):
        run, what, results, recorded = evaluate(location, args[1:])
    write_outputs(out, what, results, recorded)
    track(run, out, what, results)
    for mode, result in results.items():
        print(f"{what['split']} ({what['images']} images), TTA {mode}: top-1 {100 * result.top1:.2f}%, top-5 {100 * result.top5:.2f}%")
    if recorded is not None:
        tta = "" if recorded["tta_acc"] is None else f", with TTA {100 * recorded['tta_acc']:.2f}%"
        print(f"the run recorded {100 * recorded['eval_acc']:.2f}%{tta}")
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
