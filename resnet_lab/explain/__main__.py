"""`python -m resnet_lab.explain <run> [images or folders...] [--class NAME] [--out DIR] [overrides...]`

<run>: a run directory, a checkpoint .pt, a W&B run or model artifact folder, or a sweep folder
with --best (its best complete trial).

Without images: the GradCAM gallery of misclassified images of a trained run, on its evaluation
split or on other data (`data=...` overrides), chosen and laid out by the gallery's options
(`explain.select=per_class|confident|random|first`, `explain.n_images`, `explain.columns`):
misclassified_gradcam.png, misclassified.json and confusion_matrix.png. With images (files of any
size PIL reads, or folders of .png/.jpg/.jpeg): GradCAM for each one's predicted class, or for
`--class NAME`, resized and normalised the way the run's data was: one PNG per image and a
contact sheet, gradcam_sheet.png. Outputs go to outputs/explain/<date>/<time> or --out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def gallery(location: Path, overrides: list[str], out: Path) -> str:
    from resnet_lab.explain.gradcam import explain_misclassified
    from resnet_lab.saved_run import rebuild, saved_run

    chosen = [] if any(o.startswith("explain=") for o in overrides) else ["explain=gradcam"]
    run, _, checkpoint, state = saved_run(location, [*chosen, *overrides])
    evaluator, classes, eval_name = rebuild(run, checkpoint, state)
    cells = explain_misclassified(evaluator.model, evaluator.eval_loader, classes, run.explain, out)
    return f"{len(cells)} misclassified {eval_name} images explained"


SHEET_IMAGES = 48  # a contact sheet larger than this is too tall to open; each image has its own PNG
BATCH = 64


def own_images(location: Path, paths: list[Path], class_name: str | None, out: Path) -> str:
    """GradCAM of each image file, in batches: one PNG per image, named after its file (with its
    folders when two files share a name), and a contact sheet of the first SHEET_IMAGES."""
    import torch

    from resnet_lab.errors import DataError
    from resnet_lab.explain.gradcam import GalleryCell, overlays, plot_gallery, save_pair, target_layer_name
    from resnet_lab.saved_run import image_files, load_model, normalise, read_image

    model, classes, run = load_model(location)
    if class_name is not None and class_name not in classes:
        raise DataError(f"--class {class_name} is not one of the run's classes: {', '.join(classes)}")
    files = image_files(paths)
    names = output_names(files)
    device = next(model.parameters()).device
    layer = target_layer_name(model, getattr(run.explain, "target_layer", None))
    sheet: list[GalleryCell] = []
    skipped: list[Path] = []
    explained = 0
    for first in range(0, len(files), BATCH):
        read = [(path, name, read_image(path, run.data.image_size)) for path, name in zip(files[first : first + BATCH], names[first : first + BATCH])]
        skipped += [path for path, _, image in read if image is None]
        read = [(path, name, image) for path, name, image in read if image is not None]
        if not read:
            continue
        images = torch.stack([image for _, _, image in read]).to(device).float()
        normalised = normalise(images, run.data)
        with torch.no_grad():
            probabilities = model(normalised).float().softmax(dim=1)
        targets = [classes.index(class_name)] * len(read) if class_name else probabilities.argmax(dim=1).tolist()
        blended = overlays(model, layer, images, normalised, targets)
        raw = images.permute(0, 2, 3, 1).round().to(torch.uint8).cpu().numpy()
        for k, ((_, name, _), target) in enumerate(zip(read, targets)):
            cell = GalleryCell(first + k, None, classes[target], float(probabilities[k, target]), raw[k], blended[k], source=name)
            save_pair(cell, out / f"{name}_gradcam.png")
            if len(sheet) < SHEET_IMAGES:
                sheet.append(cell)
        explained += len(read)
    if not explained:
        raise DataError(f"none of the {len(skipped)} images could be read: {', '.join(map(str, skipped[:5]))}")
    plot_gallery(sheet, out / "gradcam_sheet.png", columns=min(6, len(sheet)))
    for path in skipped:
        print(f"skipped (unreadable): {path}", file=sys.stderr)
    if explained > len(sheet):
        print(f"gradcam_sheet.png shows the first {len(sheet)} of {explained} images; every image has its own <name>_gradcam.png")
    return f"{explained} images explained ({'class ' + class_name if class_name else 'predicted class'}), {len(skipped)} skipped"


def output_names(files: list[Path]) -> list[str]:
    """A distinct name per file: its stem, or where stems repeat (x.jpg in two folders) its path
    below the folder the files share, folders joined by '__' (and its suffix kept, if need be)."""
    stems = [path.stem for path in files]
    if len(set(stems)) == len(stems):
        return stems
    root = Path(os.path.commonpath([str(path.absolute().parent) for path in files]))
    relative = [path.absolute().relative_to(root) for path in files]
    names = [str(path.with_suffix("")).replace(os.sep, "__") for path in relative]
    if len(set(names)) == len(names):
        return names
    return [str(path).replace(os.sep, "__") for path in relative]


def main(argv: list[str] | None = None) -> None:
    from resnet_lab.run_folder import claim_output_folder
    from resnet_lab.saved_run import command_line, one_line_errors, output_folder, run_location

    args, options, best = command_line(argv, __doc__, ("--class", "--out"))
    # An argument that names an existing file or folder is an image, even with '=' in its name.
    images = [Path(a) for a in args[1:] if Path(a).exists() or "=" not in a]
    overrides = [a for a in args[1:] if not Path(a).exists() and "=" in a]
    with one_line_errors():
        out = claim_output_folder(output_folder(options.get("--out"), "explain"))
    with one_line_errors(out):
        location = run_location(args[0], best)
        done = own_images(location, images, options.get("--class"), out) if images else gallery(location, overrides, out)
    print(f"{done}; outputs in {out}")


if __name__ == "__main__":
    main()
