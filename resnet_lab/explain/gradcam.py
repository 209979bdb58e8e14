"""GradCAM galleries of misclassified test images, with the grad-cam package.

GradCAM runs in fp32, outside autocast, on the plain (uncompiled) module, for the class the model
predicted: the question a gallery answers is "what made it say that?". The model's train/eval
mode and every parameter's requires_grad are put back afterwards, so a job's results do not
depend on whether the gallery was drawn.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from resnet_lab.config.schema import GallerySelect, GradCAMConfig
from resnet_lab.data.loader import DeviceLoader
from resnet_lab.errors import ConfigError
from resnet_lab.files import atomic_write, write_json
from resnet_lab.plotting import pyplot


@dataclass
class GalleryCell:
    index: int
    true: str | None  # None: an image without a label (a user's own file)
    predicted: str
    confidence: float
    image: np.ndarray  # HxWx3 uint8, un-normalised
    overlay: np.ndarray  # HxWx3 uint8, GradCAM heat map blended onto the image
    source: str | None = None  # the file it came from (a user's own image)

    @property
    def title(self) -> str:
        truth = "" if self.true is None else f" / true: {self.true}"
        named = "" if self.source is None else f"{self.source}\n"
        return f"{named}pred: {self.predicted}{truth} (p={self.confidence:.2f})"


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    modes = {name: module.training for name, module in model.named_modules()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        yield
    finally:
        for name, module in model.named_modules():
            module.train(modes[name])
        for name, p in model.named_parameters():
            p.requires_grad_(grads[name])


def target_layer_name(model: nn.Module, name: str | None) -> str:
    """`name`, or (None) the layer the model's class names as its GradCAM layer: the layer
    follows the model, so model=... needs no explain.target_layer."""
    chosen = name or getattr(model, "gradcam_layer", None)
    if chosen is None:
        raise ConfigError(f"explain.target_layer=null, but {type(model).__name__} names no GradCAM layer; set explain.target_layer to one of its modules")
    return chosen


def target_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        blocks = [n for n in modules if n and n.count(".") <= 1]
        raise ConfigError(f"explain.target_layer={name!r} is not a module of the model; allowed e.g.: {', '.join(blocks)}")
    return modules[name]


@torch.no_grad()
def predictions(model: nn.Module, loader: DeviceLoader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(predicted class, its softmax probability, true label) for every evaluation image, fp32."""
    model.eval()
    preds, probs, labels = [], [], []
    for images, batch_labels in loader:
        p = torch.softmax(model(images.float()).float(), dim=1)
        confidence, pred = p.max(dim=1)
        preds.append(pred)
        probs.append(confidence)
        labels.append(batch_labels)
    return torch.cat(preds), torch.cat(probs), torch.cat(labels)


def confusion_matrix(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> np.ndarray:
    counts = torch.bincount(true * num_classes + predicted, minlength=num_classes**2)
    return counts.view(num_classes, num_classes).cpu().numpy()


def select_mistakes(predicted: torch.Tensor, confidence: torch.Tensor, true: torch.Tensor, n: int, how: GallerySelect) -> list[int]:
    """Indices of up to `n` misclassified images. The first mistakes in evaluation order are
    usually all of one class (test sets are often stored class by class) and teach little; the
    default takes the most confident mistake of each true class in turn, so the gallery shows
    where the model is surest and wrong, across the classes."""
    wrong = torch.nonzero(predicted != true).flatten().cpu()
    if how == GallerySelect.first:
        return wrong[:n].tolist()
    if how == GallerySelect.random:
        return wrong[torch.randperm(len(wrong), generator=torch.Generator().manual_seed(0))[:n]].tolist()
    by_confidence = wrong[torch.argsort(confidence.cpu()[wrong], descending=True, stable=True)]
    if how == GallerySelect.confident:
        return by_confidence[:n].tolist()
    queues: dict[int, list[int]] = {}
    for index in by_confidence.tolist():
        queues.setdefault(int(true[index]), []).append(index)
    chosen: list[int] = []
    while len(chosen) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def overlays(model: nn.Module, layer: str, images: torch.Tensor, normalised: torch.Tensor, targets: list[int]) -> list[np.ndarray]:
    """GradCAM of `layer` for each image's target class, blended onto the image: HxWx3 uint8.
    `images` are the raw pixels (uint8 values, any float dtype), `normalised` what the model sees."""
    # grad-cam brings torchvision and scikit-learn (about 4 s of imports): loaded only here, so
    # that runs with explain=none, sweeps' refused settings and --help never pay for it.
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with preserved_state(model):
        for p in model.parameters():
            p.requires_grad_(True)
        with torch.autocast(normalised.device.type, enabled=False), GradCAM(model=model, target_layers=[target_layer(model, layer)]) as cam:
            maps = cam(input_tensor=normalised.contiguous(), targets=[ClassifierOutputTarget(t) for t in targets])
    pixels = images.permute(0, 2, 3, 1).cpu().float().numpy() / 255.0
    return [show_cam_on_image(pixels[k].astype(np.float32), maps[k], use_rgb=True, image_weight=0.5) for k in range(len(targets))]


def explain_misclassified(model: nn.Module, loader: DeviceLoader, classes: list[str], cfg: GradCAMConfig, out_dir: Path) -> list[GalleryCell]:
    """Writes misclassified_gradcam.png, misclassified.json and confusion_matrix.png."""
    layer = target_layer_name(model, cfg.target_layer)
    with preserved_state(model):
        predicted, confidence, true = predictions(model, loader)
    wrong = select_mistakes(predicted, confidence, true, cfg.n_images, GallerySelect(cfg.select))
    cells: list[GalleryCell] = []
    if wrong:
        images = loader.images[wrong].float()
        blended = overlays(model, layer, images, (images - loader.mean) * loader.inv_std, [int(predicted[i]) for i in wrong])
        raw = images.permute(0, 2, 3, 1).round().to(torch.uint8).cpu().numpy()
        for k, i in enumerate(wrong):
            cells.append(GalleryCell(i, classes[int(true[i])], classes[int(predicted[i])], float(confidence[i]), raw[k], blended[k]))
    matrix = confusion_matrix(predicted, true, len(classes))
    write_json(
        out_dir / "misclassified.json",
        {
            "n_misclassified": int((predicted != true).sum()),
            "n_evaluated": len(true),
            "target_layer": layer,
            "images": [{"index": c.index, "true": c.true, "predicted": c.predicted, "confidence": c.confidence} for c in cells],
        },
    )
    plot_gallery(cells, out_dir / "misclassified_gradcam.png", cfg.columns)
    plot_confusion(matrix, classes, out_dir / "confusion_matrix.png")
    return cells


def plot_gallery(cells: list[GalleryCell], path: Path, columns: int) -> None:
    plt = pyplot()
    columns = max(1, min(columns, len(cells)))
    rows = max(1, math.ceil(len(cells) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, cell in zip(axes.flat, cells):
        axis.imshow(np.concatenate([cell.image, cell.overlay], axis=1), interpolation="nearest")
        axis.set_title(cell.title, fontsize=7)
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)


def save_pair(cell: GalleryCell, path: Path, scale: int = 4) -> None:
    """One image and its overlay side by side, enlarged, with the title beneath: drawn with PIL,
    a few milliseconds an image where a matplotlib figure takes a tenth of a second."""
    from PIL import Image, ImageDraw

    pair = Image.fromarray(np.concatenate([cell.image, cell.overlay], axis=1))
    pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
    lines = cell.title.splitlines()
    canvas = Image.new("RGB", (pair.width, pair.height + 14 * len(lines) + 6), "white")
    canvas.paste(pair, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((4, pair.height + 3 + 14 * row), line, fill="black")
    with atomic_write(path) as handle:
        canvas.save(handle, format="PNG")


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "confusion matrix") -> None:
    plt = pyplot()
    size = max(4, 0.6 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true", title=title)
    axis.set_xticklabels(classes, rotation=45, ha="right")
    axis.set_yticklabels(classes)
    for (r, c), count in np.ndenumerate(matrix):
        axis.text(c, r, str(count), ha="center", va="center", fontsize=7, color="white" if count > matrix.max() / 2 else "black")
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
