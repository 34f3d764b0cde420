"""The counter-based masks: the documented function of (seed, call, index, sample, unit), Bernoulli(1 - p_q) and
independent elements, the same for any split of the work and on any device."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_deep.models import MLP
from lit_deep.nn.dropout import MCDropout, _drop_levels, apply_mask, quantize_rate
from lit_deep.uncertainty import mc_predict
from lit_deep.uncertainty._masks import _GAMMA, MAX_INDEX, PIECE_WORDS, MaskSampler, call_key, mix64


def reference_keep(seed: int, call: int, index: int, sample: int, unit: int, p: float) -> bool:
    """The module docstring's scheme, in Python integers."""
    row = mix64(call_key(seed, call) + (index * 2**14 + sample + 1) * _GAMMA)
    word = mix64(row + (unit // 4 + 1) * _GAMMA)
    draw = (word >> (16 * (unit % 4))) & 0xFFFF
    return (draw ^ 0x8000) >= _drop_levels(p)


def _masks(indices, samples, shape=(5,), p=0.5, seed=0, calls=2, split=None, device="cpu"):
    sampler = MaskSampler(seed)
    sampler.begin_chunk(torch.as_tensor(indices, device=device))
    out = []
    for count in split or [samples]:
        sampler.begin_samples(count)
        out.append([sampler.mask(shape, p, device=torch.device(device)) for _ in range(calls)])
    return [torch.cat([step[j] for step in out]) for j in range(calls)]


def test_masks_are_the_documented_function_of_seed_call_index_sample_unit():
    sampler = MaskSampler(7)
    indices = [5, 2**40, 3, MAX_INDEX - 1]
    sampler.begin_chunk(torch.tensor(indices))
    sampler.begin_samples(3, first=9990)
    first, second = sampler.mask((3, 7), 0.3), sampler.mask((11,), 0.6)
    for t in range(3):
        for i, n in enumerate(indices):
            got = first[t, i].reshape(-1).tolist()
            assert got == [reference_keep(7, 0, n, 9990 + t, u, 0.3) for u in range(21)]
            assert second[t, i].tolist() == [reference_keep(7, 1, n, 9990 + t, u, 0.6) for u in range(11)]


def test_mix64_is_splitmix64():
    # SplitMix64 with seed 1234567: the first outputs of the reference C implementation.
    state, outputs = 1234567, []
    for _ in range(3):
        state += _GAMMA
        outputs.append(mix64(state))
    assert outputs == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_indices_out_of_range_and_bad_seed_are_refused():
    with pytest.raises(ValueError, match="indices"):
        MaskSampler(0).begin_chunk(torch.tensor([MAX_INDEX]))
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
    # Different dropout calls, samples, images and seeds get different masks.
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(full[0][0], full[0][1])
    assert not torch.equal(full[0][:, 0], full[0][:, 1])
    assert not torch.equal(full[0], _masks(range(0, 100), 6, seed=1)[0])


def test_rows_longer_than_a_piece_are_cut_into_pieces_of_words():
    units = 4 * PIECE_WORDS + 6  # two pieces and a partial word
    sampler = MaskSampler(3)
    sampler.begin_chunk(torch.tensor([11]))
    sampler.begin_samples(1, first=2)
    keep = sampler.mask((units,), 0.5)[0, 0]
    for u in (0, 1, 4 * PIECE_WORDS - 1, 4 * PIECE_WORDS, units - 1):
        assert bool(keep[u]) == reference_keep(3, 0, 11, 2, u, 0.5)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_elements_are_bernoulli_with_the_quantised_rate(p):
    (keep,) = _masks(range(1000, 1100), 100, shape=(61,), p=p, calls=1)  # 610,000 elements
    q = 1 - quantize_rate(p)
    stderr = (q * (1 - q) / keep.numel()) ** 0.5
    assert abs(keep.double().mean().item() - q) < 5 * stderr
    # The rate of every unit lane, sample and image is the same (each within 5 of its standard errors).
    for dim, size in ((0, 100), (1, 100)):
        rates = keep.double().mean(dim=tuple(d for d in range(3) if d != dim))
        per = (q * (1 - q) / (keep.numel() / size)) ** 0.5
        assert (rates - q).abs().max().item() < 5 * per


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_elements_are_independent_across_samples_units_and_images(p):
    """Correlation of pairs of elements ~0: neighbours along each axis, same-word lanes, next-word lanes."""
    (keep,) = _masks(range(200), 120, shape=(40,), p=p, calls=1)
    k = keep.double()
    pairs = {
        "samples t, t+1": (k[:-1], k[1:]),
        "images n, n+1": (k[:, :-1], k[:, 1:]),
        "units u, u+1 (same word)": (k[..., :-1], k[..., 1:]),
        "units u, u+4 (next word, same lane)": (k[..., :-4], k[..., 4:]),
        "samples t, t+7 and units u, u+3": (k[:-7, :, :-3], k[7:, :, 3:]),
    }
    for name, (a, b) in pairs.items():
        a, b = a.reshape(-1), b.reshape(-1)
        r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(r) < 5 / a.numel() ** 0.5, f"{name}: correlation {r:.4f}"
        q = 1 - quantize_rate(p)
        both = (a * b).mean().item()  # P(both kept) = q**2 for independent elements
        assert abs(both - q * q) < 5 * (q * q * (1 - q * q) / a.numel()) ** 0.5, name
    # Across dropout calls of one pass, too.
    first, second = (m.double().reshape(-1) for m in _masks(range(200), 50, shape=(40,), p=p, calls=2))
    assert abs(torch.corrcoef(torch.stack([first, second]))[0, 1].item()) < 5 / first.numel() ** 0.5


@pytest.mark.parametrize("alpha", [False, True])
def test_applied_dropout_equals_apply_mask_with_the_mask(alpha):
    x = torch.randn(2, 3, 50, generator=torch.Generator().manual_seed(0))
    for rows in (x[:1], x):  # broadcast over the samples, or one row per sample
        masks, applied = MaskSampler(5), MaskSampler(5)
        for sampler in (masks, applied):
            sampler.begin_chunk(torch.tensor([4, 8, 9]))
            sampler.begin_samples(2)
        keep = masks.mask((50,), 0.3, x.dtype)
        assert torch.equal(applied.dropout(rows, 0.3, alpha), apply_mask(rows, keep, 0.3, alpha=alpha))


def _net() -> nn.Module:
    return nn.Sequential(MCDropout(0.3), nn.Linear(6, 5), nn.ReLU(), MCDropout(0.5), nn.Linear(5, 3)).eval()


@pytest.mark.parametrize("exact", [True, False])
def test_predictions_do_not_depend_on_the_split_of_the_work(exact):
    """Exactly equal for a model made of dropout only (its outputs are the masks); the MLP's matrix products may
    round differently for other batch sizes, so its predictions are compared to 1e-6."""
    net = nn.Sequential(MCDropout(0.3), MCDropout(0.5)) if exact else _net()
    same = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-6))
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    whole = mc_predict(net, x, samples=20, seed=3, return_samples=True)
    assert whole.samples is not None
    small = mc_predict(net, x, samples=20, seed=3, batch_size=3, max_elements=7, return_samples=True)
    assert same(whole.samples, small.samples)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(2))
    shuffled = mc_predict(net, x[perm], samples=20, seed=3, indices=perm, return_samples=True)
    assert same(whole.samples[:, perm], shuffled.samples)
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=3)
    assert same(whole.probs, mc_predict(net, loader, samples=20, seed=3).probs)
    # A DDP-style shard: the second half alone, with its dataset indices.
    shard = mc_predict(net, x[5:], samples=20, seed=3, indices=torch.arange(5, 10), return_samples=True)
    assert same(whole.samples[:, 5:], shard.samples)
    # Another seed changes them.
    assert not torch.allclose(whole.probs, mc_predict(net, x, samples=20, seed=4).probs)


def test_the_traced_and_the_whole_model_paths_draw_the_same_masks():
    net = MLP(input_shape=(6,), hidden=(5,), num_classes=3, dropout=0.4, seed=0)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    fast = mc_predict(net, x, samples=8, seed=1, enable_dropout=True)

    class Opaque(nn.Module):  # not traceable (data-dependent control flow): runs whole for every sample
        def __init__(self) -> None:
            super().__init__()
            self.inner = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) if bool(x.sum() > -1e9) else self.inner(-x)

    assert torch.allclose(mc_predict(Opaque(), x, samples=8, seed=1, enable_dropout=True).probs, fast.probs)


@pytest.mark.cuda
def test_masks_and_predictions_are_the_same_on_cuda():
    for a, b in zip(_masks(range(70), 9), _masks(range(70), 9, device="cuda"), strict=True):
        assert b.device.type == "cuda"
        assert torch.equal(a, b.cpu())
    net, x = _net(), torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    cpu = mc_predict(net, x, samples=20, seed=3, return_samples=True)
    gpu = mc_predict(net.cuda(), x.cuda(), samples=20, seed=3, indices=torch.arange(10).cuda(), return_samples=True)
    assert gpu.probs.device.type == "cuda"
    assert gpu.samples is not None and cpu.samples is not None
    assert torch.allclose(cpu.samples, gpu.samples.cpu(), atol=1e-5)
    # CPU inputs with a CUDA model: computed on the GPU, returned on the CPU.
    assert mc_predict(net, x, samples=20, seed=3).probs.device.type == "cpu"
