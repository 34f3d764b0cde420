import pytest
import torch

from lit_deep.data.augment import RandomShiftFlip


def _shift_reference(image, dy, dx, fill):
    """Plain loops: output[r, c] = image[r - dy, c - dx], ``fill`` where that is outside."""
    channels, h, w = image.shape
    out = torch.empty_like(image)
    for ch in range(channels):
        for r in range(h):
            for c in range(w):
                sr, sc = r - dy, c - dx
                inside = 0 <= sr < h and 0 <= sc < w
                out[ch, r, c] = (
                    image[ch, sr, sc] if inside else (fill if isinstance(fill, float) else fill[0, ch, r, c])
                )
    return out


def _candidates(image, max_shift, fill):
    for flipped in (image, image.flip(-1)):
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                yield (flipped is not image, dy, dx), _shift_reference(flipped, dy, dx, fill)


def test_shape_and_dtype():
    x = torch.rand(5, 2, 9, 7)
    out = RandomShiftFlip(3, 0.5, seed=1)(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype


def test_flip_is_exact():
    x = torch.rand(4, 1, 6, 5)
    assert torch.equal(RandomShiftFlip(0, 1.0)(x), x.flip(-1))
    assert torch.equal(RandomShiftFlip(0, 0.0)(x), x)


@pytest.mark.parametrize("fill", [0.0, -1.5, "tensor"])
def test_every_output_is_a_shift_and_flip_of_its_input(fill):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(10, 2, 5, 5, generator=gen) + 1  # no pixel equals the fill
    aug = RandomShiftFlip(max_shift=2, flip_p=0.5, seed=3)
    if fill == "tensor":
        fill = -torch.rand(1, 2, 5, 5, generator=gen)
    aug.fill = fill
    out = aug(x)
    found = set()
    for image, result in zip(x, out, strict=True):
        matches = [key for key, ref in _candidates(image, 2, fill) if torch.equal(ref, result)]
        assert matches, "output is not a shifted/flipped copy of its input"
        found.add(matches[0])
    assert len(found) > 3  # the shifts really vary across the batch
    assert any(key[0] for key in found)
    assert not all(key[0] for key in found)


def test_seeded_and_independent_of_global_rng():
    x = torch.rand(8, 1, 5, 5)
    torch.manual_seed(0)
    a = RandomShiftFlip(2, 0.5, seed=5)(x)
    torch.manual_seed(1)
    b = RandomShiftFlip(2, 0.5, seed=5)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, RandomShiftFlip(2, 0.5, seed=6)(x))


def test_shift_fills_vacated_pixels():
    x = torch.ones(64, 1, 4, 4)
    out = RandomShiftFlip(max_shift=1, flip_p=0.0, seed=0)(x)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert (out.sum((1, 2, 3)) >= 9).all()  # a 1-pixel shift keeps at least a 3x3 block


def test_errors():
    with pytest.raises(ValueError, match=r"max_shift: must be an integer >= 0, got -1"):
        RandomShiftFlip(-1)
    with pytest.raises(ValueError, match=r"flip_p: must be a number in \[0, 1\], got 1.5"):
        RandomShiftFlip(1, 1.5)
