"""Dropout masks keyed on the image's dataset index, so that a prediction does not depend on how it is split.

Scheme (the contract that makes DDP and single-process results equal):

* Images are grouped in blocks of :data:`IMAGE_BLOCK` consecutive dataset indices (block ``b = index // 32``).
* The ``j``-th dropout call of a forward pass (``j < 256``) and block ``b`` (``b < 2**24``) own one random
  stream: a CPU ``torch.Generator`` (MT19937) seeded with ``fmix32(fmix32(j * 2**24 + b) ^ s)``, where ``s``
  folds the user's seed to 32 bits with splitmix64. ``fmix32`` (MurmurHash3's finaliser) is a bijection, so two
  (call, block) pairs of one seed never share a stream.
* Sample ``t = 0, 1, ..., T-1`` of the stream takes ``ceil(32 m / 4)`` 64-bit words (``m`` = mask elements
  per image), cut into 16-bit draws; image ``b * 32 + i`` uses draws ``[i m, (i + 1) m)``; a unit is kept when
  its draw is at or above the threshold of :func:`~lit_deep.nn.dropout.keep_threshold`.

The mask of image ``n``, sample ``t`` and dropout call ``j`` is therefore a function of ``(seed, j, n, t)``
only: chunking over images or samples, batch sizes, and DDP shards do not change it. A chunk that starts or
ends inside a block draws the whole block and keeps its own rows.
"""

from __future__ import annotations

import math

import torch

from lit_deep._validate import check_int
from lit_deep.nn.dropout import keep_threshold

__all__ = ["IMAGE_BLOCK", "MaskSampler", "stream_key"]

IMAGE_BLOCK = 32
_MAX_CALLS = 1 << 8
_MAX_BLOCKS = 1 << 24
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _fold_seed(seed: int) -> int:
    z = (seed + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z ^ (z >> 32)) & _M32


def stream_key(seed: int, call: int, block: int) -> int:
    """The 32-bit generator seed of dropout call ``call`` and image block ``block`` (see the module docs).

    Raises:
        ValueError: if ``call`` or ``block`` is out of range.

    Example::

        >>> stream_key(0, 0, 0) != stream_key(0, 0, 1) != stream_key(0, 1, 0)
        True
    """
    if not 0 <= call < _MAX_CALLS:
        raise ValueError(f"call: a forward pass may make at most {_MAX_CALLS} dropout calls, got call {call}")
    if not 0 <= block < _MAX_BLOCKS:
        raise ValueError(f"indices: dataset indices must be in [0, {_MAX_BLOCKS * IMAGE_BLOCK}), got block {block}")
    return _fmix32(_fmix32(call * _MAX_BLOCKS + block) ^ _fold_seed(seed))


class MaskSampler:
    """Draws the keep masks of one image chunk, ``samples`` at a time, following the keyed scheme.

    Usage: :meth:`begin_chunk` with the chunk's dataset indices, then for each group of samples
    :meth:`begin_samples` before the forward pass; each dropout call asks :meth:`mask`.

    Args:
        seed: the user's seed (any non-negative integer).

    Example::

        >>> sampler = MaskSampler(seed=0)
        >>> sampler.begin_chunk(torch.arange(40, 45))
        >>> sampler.begin_samples(3)
        >>> keep = sampler.mask((4,), 0.5)
        >>> other = MaskSampler(seed=0)
        >>> other.begin_chunk(torch.arange(42, 43))
        >>> other.begin_samples(3)
        >>> tuple(keep.shape), torch.equal(other.mask((4,), 0.5), keep[:, 2:3])
        ((3, 5, 4), True)
    """

    def __init__(self, seed: int) -> None:
        self.seed = check_int("seed", seed, minimum=0)
        self.samples = 0
        self._call = 0
        self._blocks: list[int] = []
        self._rows: slice | torch.Tensor = slice(0, 0)
        self._streams: dict[tuple[int, int], torch.Generator] = {}

    @property
    def images(self) -> int:
        """Number of images of the current chunk."""
        rows = self._rows
        return rows.stop - rows.start if isinstance(rows, slice) else int(rows.numel())

    def begin_chunk(self, indices: torch.Tensor) -> None:
        """Start a chunk of images with these dataset indices (int64 ``[S]``, any order)."""
        blocks = torch.div(indices, IMAGE_BLOCK, rounding_mode="floor")
        unique = torch.unique(blocks)
        self._blocks = unique.tolist()
        first = int(indices[0])
        if torch.equal(indices, torch.arange(first, first + indices.numel())):
            offset = first - self._blocks[0] * IMAGE_BLOCK
            self._rows = slice(offset, offset + indices.numel())
        else:
            slot = torch.searchsorted(unique, blocks)
            self._rows = slot * IMAGE_BLOCK + indices - blocks * IMAGE_BLOCK
        self._streams = {}

    def begin_samples(self, samples: int) -> None:
        """Start a forward pass that computes the next ``samples`` samples of every image of the chunk."""
        self.samples = samples
        self._call = 0

    def _stream(self, call: int, block: int) -> torch.Generator:
        stream = self._streams.get((call, block))
        if stream is None:
            stream = torch.Generator().manual_seed(stream_key(self.seed, call, block))
            self._streams[(call, block)] = stream
        return stream

    def mask(self, shape: tuple[int, ...], p: float, dtype: torch.dtype = torch.bool) -> torch.Tensor:
        """Keep mask ``[samples, S, *shape]`` (0/1 of ``dtype``) for the next dropout call (``shape``: per image)."""
        call, self._call = self._call, self._call + 1
        per_image = math.prod(shape)
        words = (IMAGE_BLOCK * per_image + 3) // 4
        draws = torch.empty(len(self._blocks), self.samples, words, dtype=torch.int64)
        for slot, block in enumerate(self._blocks):
            draws[slot].random_(-(2**63), None, generator=self._stream(call, block))
        lanes = draws.view(torch.int16)[..., : IMAGE_BLOCK * per_image]
        lanes = lanes.view(len(self._blocks), self.samples, IMAGE_BLOCK, per_image).transpose(0, 1)
        keep = torch.empty(self.samples, len(self._blocks), IMAGE_BLOCK, per_image, dtype=dtype)
        torch.ge(lanes, keep_threshold(p), out=keep)
        keep = keep.view(self.samples, len(self._blocks) * IMAGE_BLOCK, per_image)
        rows = keep[:, self._rows] if isinstance(self._rows, slice) else keep.index_select(1, self._rows)
        return rows.view(self.samples, rows.shape[1], *shape)
