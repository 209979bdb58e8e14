"""`python -m resnet_lab.predict <run dir | checkpoint.pt | W&B run or model artifact dir | sweep dir --best> <image files or folders...> [--top K] [--out DIR]`

Labels new images with a trained run: the top K classes (default 3) with their probabilities for
every image file given, or found under a folder given (.png, .jpg, .jpeg), as a table on the
terminal and predictions.csv (default outputs/predict/<date>/<time>/). Images of any size are
converted to RGB, resized to the run's data.image_size and normalised with the run's mean and std,
the way its data was; batches run on the run's device, in its precision, with the final weights
evaluation used (checkpoints/last.pt; or the checkpoint of a W&B run or model artifact folder).
An unreadable image is named and skipped, and the skipped ones are listed at the end; when none
is readable the command stops with exit 2 and writes nothing.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

BATCH = 256


def predict(location: Path, paths: list[Path], top: int) -> tuple[list[tuple[Path, list[tuple[str, float]]]], list[Path]]:
    """(file, [(class, probability)] best first) for each readable file, and the skipped files."""
    import torch
    from tqdm import tqdm

    from resnet_lab.saved_run import image_files, load_model, normalise, read_image
    from resnet_lab.train.environment import autocast, select_precision

    model, classes, run = load_model(location)
    files = image_files(paths)
    device = next(model.parameters()).device
    precision = select_precision(run.trainer, device)
    k = min(top, len(classes))
    results, skipped = [], []
    with torch.no_grad(), tqdm(total=len(files), unit="img", disable=None) as bar:
        for first in range(0, len(files), BATCH):
            chunk = files[first : first + BATCH]
            images = [read_image(path, run.data.image_size) for path in chunk]
            skipped += [path for path, image in zip(chunk, images) if image is None]
            readable = [(path, image) for path, image in zip(chunk, images) if image is not None]
            if readable:
                batch = normalise(torch.stack([image for _, image in readable]).to(device), run.data)
                with autocast(precision, device):
                    logits = model(batch)
                probabilities = logits.float().softmax(dim=1)
                values, indices = probabilities.topk(k, dim=1)
                for (path, _), row_values, row_indices in zip(readable, values.tolist(), indices.tolist()):
                    results.append((path, [(classes[i], p) for i, p in zip(row_indices, row_values)]))
            bar.update(len(chunk))
    return results, skipped


def main(argv: list[str] | None = None) -> None:
    from resnet_lab.errors import ConfigError, DataError
    from resnet_lab.run_folder import claim_output_folder
    from resnet_lab.saved_run import command_line, one_line_errors, output_folder, run_location

    args, options, best = command_line(argv, __doc__, ("--top", "--out"))
    with one_line_errors():
        top = options.get("--top", "3")
        if not top.isdigit() or int(top) < 1:
            raise ConfigError(f"--top {top} is not allowed: the number of classes to list per image, an integer >= 1")
        if len(args) < 2:
            raise ConfigError("no images given: name image files or folders of images after the run")
        out = claim_output_folder(output_folder(options.get("--out"), "predict"))
    with one_line_errors(out):
        results, skipped = predict(run_location(args[0], best), [Path(a) for a in args[1:]], int(top))
        if not results:
            raise DataError(f"none of the {len(skipped)} images could be read: {', '.join(map(str, skipped[:5]))}")
    ranks = len(results[0][1])  # --top is capped at the number of classes
    if ranks < int(top):
        print(f"--top {top} is more than the run's {ranks} classes: all {ranks} are listed")
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *[f"{kind}_{rank}" for rank in range(1, ranks + 1) for kind in ("class", "probability")]])
        for path, ranked in results:
            writer.writerow([path, *[value for name, p in ranked for value in (name, f"{p:.4f}")]])
    width = max(len(str(path)) for path, _ in results)
    for path, ranked in results:
        print(f"{str(path):<{width}}  " + "  ".join(f"{name} {100 * p:5.1f}%" for name, p in ranked))
    for path in skipped:
        print(f"skipped (unreadable): {path}", file=sys.stderr)
    print(f"{len(results)} images labelled, {len(skipped)} skipped; predictions in {out / 'predictions.csv'}")


if __name__ == "__main__":
    main()
