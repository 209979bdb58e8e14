import torch

from conftest import augmentation
from resnet_lab.augment import Cutout, HorizontalFlip, RandomCrop, build_augment


def batch(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_are_kept():
    x = batch()
    augment = build_augment(augmentation("cutout"))
    assert augment(x, gen()).shape == x.shape


def test_flip_is_a_mirror():
    x = batch()
    assert torch.equal(HorizontalFlip(1.0)(x, gen()), x.flip(3))
    assert torch.equal(HorizontalFlip(0.0)(x, gen()), x)
    mixed = HorizontalFlip(0.5)(x, gen())
    flipped = [torch.equal(mixed[i], x[i].flip(2)) for i in range(len(x))]
    kept = [torch.equal(mixed[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_crop_is_a_window_of_the_reflect_padded_image():
    x = batch(8)
    out = RandomCrop(4, "reflect")(x, gen())
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    offsets = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])]
        assert matches, f"image {i} is not a 32x32 window of its padded version"
        offsets.append(matches[0])
    assert len(set(offsets)) > 1
    assert torch.equal(RandomCrop(0)(x, gen()), x)


def test_zero_padding_mode_fills_zeros():
    x = torch.ones(64, 3, 32, 32)
    out = RandomCrop(4, "zeros")(x, gen())
    assert (out == 0).any() and set(out.unique().tolist()) <= {0.0, 1.0}


def test_cutout_zeroes_exactly_the_square_around_its_centre():
    x = torch.ones(32, 3, 32, 32)
    generator = gen(3)
    state = generator.get_state()
    out = Cutout(8, 1.0)(x, generator)
    generator.set_state(state)
    cy = torch.randint(0, 32, (32, 1, 1), generator=generator).flatten()
    cx = torch.randint(0, 32, (32, 1, 1), generator=generator).flatten()
    for i in range(32):
        top, left = max(0, cy[i] - 4), max(0, cx[i] - 4)
        bottom, right = min(32, cy[i] + 4), min(32, cx[i] + 4)
        expected = torch.ones(32, 32)
        expected[top:bottom, left:right] = 0
        assert torch.equal(out[i, 0], expected) and torch.equal(out[i, 1], expected)
    interior = ((cy >= 4) & (cy <= 28) & (cx >= 4) & (cx <= 28)).nonzero().flatten()
    assert all(int((out[i, 0] == 0).sum()) == 64 for i in interior)
    assert torch.equal(Cutout(8, 0.0)(x, gen()), x)


def test_same_seed_same_batch_different_seed_different_batch():
    augment = build_augment(augmentation("cutout", "cutout_p=0.5"))
    x = batch()
    assert torch.equal(augment(x, gen(1)), augment(x, gen(1)))
    assert not torch.equal(augment(x, gen(1)), augment(x, gen(2)))


def test_none_builds_nothing():
    assert build_augment(augmentation("none")) is None
