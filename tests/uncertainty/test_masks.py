import pytest
import torch

from lit_deep.nn.dropout import quantize_rate
from lit_deep.uncertainty._masks import IMAGE_BLOCK, MaskSampler, stream_key


def _masks(indices, samples, shape=(5,), p=0.5, seed=0, calls=2, split=None):
    sampler = MaskSampler(seed)
    sampler.begin_chunk(torch.as_tensor(indices))
    out = []
    for count in split or [samples]:
        sampler.begin_samples(count)
        out.append([sampler.mask(shape, p) for _ in range(calls)])
    return [torch.cat([step[j] for step in out]) for j in range(calls)]


def test_keys_of_one_seed_never_collide():
    keys = {stream_key(3, call, block) for call in range(4) for block in range(5000)}
    assert len(keys) == 4 * 5000
    assert stream_key(0, 0, 0) != stream_key(1, 0, 0)


def test_key_ranges_are_checked():
    with pytest.raises(ValueError, match="call"):
        stream_key(0, 256, 0)
    with pytest.raises(ValueError, match="indices"):
        stream_key(0, 0, 1 << 24)
    with pytest.raises(ValueError, match="seed"):
        MaskSampler(-1)


def test_mask_of_an_image_depends_only_on_its_index_and_sample():
    full = _masks(range(0, 100), 6)
    part = _masks(range(40, 75), 6, split=[2, 3, 1])  # another chunk, samples in three groups
    for a, b in zip(full, part, strict=True):
        assert a.shape == (6, 100, 5)
        assert torch.equal(a[:, 40:75], b)
    scattered = torch.tensor([90, 3, 64, 31, 32])
    for a, b in zip(full, _masks(scattered, 6), strict=True):
        assert torch.equal(a[:, scattered], b)
    # Different dropout calls, samples and blocks get different masks.
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(full[0][0], full[0][1])
    assert not torch.equal(full[0][:, :IMAGE_BLOCK], full[0][:, IMAGE_BLOCK : 2 * IMAGE_BLOCK])


def test_mask_rate_and_feature_shape():
    (keep,) = _masks(range(64), 200, shape=(3, 1, 1), p=0.2, calls=1)
    assert keep.shape == (200, 64, 3, 1, 1)
    rate = 1 - keep.double().mean().item()
    sigma = (0.2 * 0.8 / keep.numel()) ** 0.5
    assert abs(rate - quantize_rate(0.2)) < 5 * sigma
