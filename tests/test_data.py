"""The readers (CIFAR pickles, image trees), their errors, the cache and the loader."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_config, write_cifar_batches, write_image_folder
from resnet_lab.config import ConfigError, validate
from resnet_lab.data import DeviceLoader, load_splits
from resnet_lab.data import cache as cache_module
from resnet_lab.errors import DataError


def data_config(overrides: list[str]):
    return validate(compose_config(overrides)).data


def test_cifar_python_batches_are_read_exactly(tmp_path):
    data, labels = write_cifar_batches(tmp_path, per_batch=20)
    cfg = data_config(["data=cifar10", f"data.root={tmp_path}", "data.download=false"])
    splits = load_splits(cfg, tmp_path)
    assert splits.classes[0] == "airplane" and splits.num_classes == 10
    assert splits.train_images.shape == (100, 3, 32, 32) and splits.train_images.dtype == torch.uint8
    expected = torch.from_numpy(data[:100].reshape(-1, 3, 32, 32))
    assert torch.equal(splits.train_images, expected)
    assert torch.equal(splits.train_labels, torch.from_numpy(labels[:100]))
    assert torch.equal(splits.eval_images, torch.from_numpy(data[100:].reshape(-1, 3, 32, 32)))


def test_missing_cifar_batches_name_root_and_the_alternative(tmp_path):
    cfg = data_config(["data=cifar10", f"data.root={tmp_path}", "data.download=false"])
    with pytest.raises(DataError) as caught:
        load_splits(cfg, tmp_path)
    message = str(caught.value)
    assert f"data.root={tmp_path}" in message and "data=image_folder" in message and "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize("data", [["data=cifar10", "data.download=false"], ["data=image_folder"]])
def test_a_run_refused_for_its_data_leaves_nothing_behind(data, tmp_path):
    from conftest import TINY, run_main

    tracked = [o for o in TINY if not o.startswith("logger=")] + ["logger=wandb"]
    result = run_main("resnet_lab.train", *data, "data.root=nowhere", *tracked, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == [], "no outputs/, no W&B run"


def test_image_folder_reads_classes_labels_and_pixels(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=5, test_per_class=2)
    splits = load_splits(data_config(["data=image_folder", f"data.root={root}"]), root)
    assert splits.classes == ["ant", "bee", "cat"]
    assert splits.train_images.shape == (15, 3, 32, 32) and splits.eval_images.shape == (6, 3, 32, 32)
    assert splits.train_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    from PIL import Image

    first = np.array(Image.open(root / "train" / "ant" / "0000.png"))
    assert torch.equal(splits.train_images[0], torch.from_numpy(first).permute(2, 0, 1))


def _expect_error(root: Path, *needles: str, kind: type[Exception] = DataError) -> None:
    with pytest.raises(kind) as caught:
        load_splits(data_config(["data=image_folder", f"data.root={root}"]), root)
    for needle in needles:
        assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_image_folder_errors_name_the_file_or_folder(tmp_path):
    _expect_error(tmp_path / "nowhere", "nowhere", "does not exist", kind=ConfigError)  # a wrong data.root setting
    root = write_image_folder(tmp_path / "a", train_per_class=2, test_per_class=1)
    (root / "train" / "dog").mkdir()
    _expect_error(root, "only in train: ['dog']")
    (root / "test" / "dog").mkdir()
    _expect_error(root, "empty class folder", str(root / "train" / "dog"))
    root = write_image_folder(tmp_path / "b", train_per_class=2, test_per_class=1)
    bad = root / "test" / "bee" / "0000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _expect_error(root, "unreadable image", str(bad))
    root = write_image_folder(tmp_path / "c", train_per_class=2, test_per_class=1)
    (root / "test").rename(root / "val")
    _expect_error(root, str(root / "test"), "is missing")


def test_wrong_image_size_is_named(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=2, test_per_class=1)
    with pytest.raises(DataError, match="expected 24x24"):
        load_splits(data_config(["data=image_folder", f"data.root={root}", "data.image_size=24"]), root)


def test_cache_is_written_reused_and_invalidated_by_a_changed_source(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=4, test_per_class=2)
    cfg = data_config(["data=image_folder", f"data.root={root}"])
    first = load_splits(cfg, root)
    cached = sorted((root / ".resnet_lab_cache").glob("*.pt"))
    assert len(cached) == 2
    cache_module.DECODED.reset()
    again = load_splits(cfg, root)
    assert torch.equal(first.train_images, again.train_images)
    assert sorted((root / ".resnet_lab_cache").glob("*.pt")) == cached

    changed = root / "train" / "ant" / "0000.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    cache_module.DECODED.reset()
    updated = load_splits(cfg, root)
    assert updated.train_images[0].sum() == 0 and first.train_images[0].sum() > 0
    assert len(list((root / ".resnet_lab_cache").glob("image_folder-train-*.pt"))) == 2


def test_memo_hands_later_jobs_the_same_tensors_and_disk_spares_decoding(tmp_path):
    calls = []

    def decode():
        calls.append(1)
        return torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1])

    first = cache_module.load_or_decode(tmp_path, "toy", "key1", decode)
    second = cache_module.load_or_decode(tmp_path, "toy", "key1", decode)
    assert second is first and len(calls) == 1
    cache_module.DECODED.reset()
    from_disk = cache_module.load_or_decode(tmp_path, "toy", "key1", decode)
    assert len(calls) == 1 and torch.equal(from_disk[0], first[0])
    cache_module.load_or_decode(tmp_path, "toy", "key2", decode)
    assert len(calls) == 2


def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "im", train_per_class=3, test_per_class=1)
    cfg = data_config(["data=image_folder", f"data.root={root}"])
    first = load_splits(cfg, root)
    for path in (root / ".resnet_lab_cache").glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])
    cache_module.DECODED.reset()
    again = load_splits(cfg, root)
    assert torch.equal(first.train_images, again.train_images)
    assert "damaged" in caplog.text


def test_subsets_and_validation_split(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=10, test_per_class=4)
    cfg = data_config(["data=image_folder", f"data.root={root}", "data.train_subset=12", "data.test_subset=5"])
    splits = load_splits(cfg, root)
    assert len(splits.train_labels) == 12 and len(splits.eval_labels) == 5 and splits.eval_name == "test"
    assert torch.equal(load_splits(cfg, root).train_images, splits.train_images)
    held = load_splits(data_config(["data=image_folder", f"data.root={root}", "data.val_fraction=0.2"]), root)
    assert held.eval_name == "val" and len(held.eval_labels) == 6 and len(held.train_labels) == 24
    train_rows = {tuple(img.flatten()[:64].tolist()) for img in held.train_images}
    assert not any(tuple(img.flatten()[:64].tolist()) in train_rows for img in held.eval_images)
    with pytest.raises(ConfigError, match="only 30 images"):
        load_splits(data_config(["data=image_folder", f"data.root={root}", "data.train_subset=31"]), root)


def test_a_validation_split_holds_out_the_same_share_of_each_class_and_keeps_the_test_split_apart(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=10, test_per_class=4)
    cfg = data_config(["data=image_folder", f"data.root={root}", "data.val_fraction=0.2"])
    held = load_splits(cfg, root)
    assert held.eval_name == "val" and torch.bincount(held.eval_labels).tolist() == [2, 2, 2], "stratified: 20% of each class"
    assert torch.bincount(held.train_labels).tolist() == [8, 8, 8]
    assert held.test_labels is not None and torch.bincount(held.test_labels).tolist() == [4, 4, 4], "the test split is kept, whole"
    again = load_splits(cfg, root)
    assert torch.equal(again.eval_images, held.eval_images), "the same rows for every run with the same data.split_seed"
    other = load_splits(data_config(["data=image_folder", f"data.root={root}", "data.val_fraction=0.2", "data.split_seed=5"]), root)
    assert not torch.equal(other.eval_images, held.eval_images)
    assert load_splits(data_config(["data=image_folder", f"data.root={root}"]), root).test_images is None


def test_loader_batches_shuffles_by_seed_and_normalises():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50)
    options = dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], device=torch.device("cpu"))
    loader = DeviceLoader(images, labels, batch_size=16, shuffle=True, drop_last=True, seed=7, **options)
    assert len(loader) == 3 and loader.num_samples == 48
    epoch = list(loader)
    assert [b[0].shape[0] for b in epoch] == [16, 16, 16]
    seen = torch.cat([b[1] for b in epoch])
    assert len(seen.unique()) == 48 and not torch.equal(seen, torch.arange(48))
    again = list(DeviceLoader(images, labels, batch_size=16, shuffle=True, drop_last=True, seed=7, **options))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(epoch, again))
    x, y = epoch[0]
    torch.testing.assert_close(x, (images[y].float() / 255 - 0.5) / 0.25)
    full = list(DeviceLoader(images, labels, batch_size=16, **options))
    assert [b[0].shape[0] for b in full] == [16, 16, 16, 2] and torch.equal(torch.cat([b[1] for b in full]), labels)


def test_ranks_together_see_exactly_the_batches_of_one_process():
    """Under ddp each rank takes its rows of every batch; the randomness is drawn for the whole
    batch, so the shards put together are the one-process batch, augmentation included."""
    from conftest import augmentation
    from resnet_lab.augment import build_augment

    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50)
    augment = build_augment(augmentation("cutout", "crop_padding=2", "cutout_size=3", "cutout_p=0.5"))
    options = dict(mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), batch_size=10, shuffle=True, seed=3, augment=augment)
    whole = list(DeviceLoader(images, labels, **options))
    shards = [list(DeviceLoader(images, labels, rank=r, world=2, **options)) for r in range(2)]
    assert [len(b[1]) for b in shards[0]] == [5] * 5
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards):
        assert torch.equal(torch.cat([y0, y1]), y)
        torch.testing.assert_close(torch.cat([x0, x1]), x)


def test_alternate_flip_mirrors_each_image_in_every_other_epoch():
    images = torch.randint(0, 256, (40, 3, 6, 6), dtype=torch.uint8)
    labels = torch.arange(40)
    loader = DeviceLoader(
        images, labels, batch_size=8, mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), shuffle=True, drop_last=True, seed=1, alternate_flip=True
    )
    plain = (images.float() / 255 - 0.5) / 0.25

    def flipped_in_epoch() -> torch.Tensor:
        flags = torch.zeros(40, dtype=torch.bool)
        for x, y in loader:
            for image, label in zip(x, y):
                mirrored = torch.allclose(image, plain[label].flip(2), atol=1e-5)
                assert mirrored or torch.allclose(image, plain[label], atol=1e-5)
                flags[label] = mirrored
        return flags

    first, second, third = flipped_in_epoch(), flipped_in_epoch(), flipped_in_epoch()
    assert 10 <= int(first.sum()) <= 30, "a random part of the images in the first epoch"
    assert torch.equal(second, ~first) and torch.equal(third, first)
    resumed = DeviceLoader(
        images, labels, batch_size=8, mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), shuffle=True, drop_last=True, seed=99, alternate_flip=True
    )
    resumed.load_state_dict(loader.state_dict())
    assert torch.equal(resumed.flip_first, loader.flip_first) and resumed.epochs_started == 3


def test_alternate_flip_needs_half_the_images_flipped():
    from resnet_lab.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"augmentation.flip_p=0.0 is not allowed.*0.5 with alternate_flip=true"):
        validate(compose_config(["augmentation=none", "augmentation.alternate_flip=true"]))


def test_later_jobs_of_a_process_reuse_the_resident_splits_and_only_the_latest_stays(tmp_path, monkeypatch):
    from resnet_lab.data import datasets, resident_splits

    root = write_image_folder(tmp_path / "im", train_per_class=4, test_per_class=2)
    cfg = data_config(["data=image_folder", f"data.root={root}"])
    first = resident_splits(cfg, root, torch.device("cpu"))
    monkeypatch.setattr(datasets, "load_splits", lambda *_: pytest.fail("a later job read the data again"))
    again = resident_splits(data_config(["data=image_folder", f"data.root={root}", "data.batch_size=4"]), root, torch.device("cpu"))
    assert again.train_images is first.train_images and again.eval_labels is first.eval_labels
    monkeypatch.undo()
    smaller = resident_splits(data_config(["data=image_folder", f"data.root={root}", "data.train_subset=5"]), root, torch.device("cpu"))
    assert len(smaller.train_labels) == 5 and len(datasets.RESIDENT) == 1
