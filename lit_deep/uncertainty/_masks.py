"""Counter-based dropout masks: each mask element is a pure function of ``(seed, call, image index, sample, unit)``.

Scheme (the contract that makes DDP, chunked, CPU and CUDA results equal):

* ``mix64`` is SplitMix64's output function (Steele, Lea & Flood, 2014: ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
  z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``, logical shifts, arithmetic modulo ``2**64``), a
  bijection of 64-bit words; ``G = 0x9E3779B97F4A7C15`` is its odd Weyl increment.
* The seed and the dropout call ``j`` (the ``j``-th stochastic dropout of a forward pass) give the call key
  ``K_j = mix64(mix64(seed + G) + (j + 1) G)``.
* Image ``n`` (its dataset index, ``n < 2**49``) and sample ``t`` (``t < 2**14``) give the row key
  ``R = mix64(K_j + (n 2**14 + t + 1) G)``: distinct ``(n, t)`` of one call never share a row key.
* Word ``w`` of the row is ``mix64(R + (w + 1) G)`` (SplitMix64's stream seeded with ``R``); it holds the 16-bit
  draws of units ``4 w`` to ``4 w + 3`` (bits ``16 (u mod 4)`` to ``16 (u mod 4) + 15``, an ``int16`` view on
  any little-endian device), in the order of the per-image mask shape.
* Unit ``u`` is kept when its draw read as ``int16`` is ``>=`` :func:`~lit_deep.nn.dropout.keep_threshold`
  ``= round(65536 p) - 32768`` (as the layers' own masks), i.e. when ``d ^ 0x8000 >= round(65536 p)`` for the
  unsigned 16-bit draw ``d``: the keep probability is exactly ``1 - quantize_rate(p)``, the rate the layers'
  ``1 / (1 - p_q)`` scaling uses, so ``E[dropout(x)] = x`` holds exactly. The rate is quantised to ``2**-16``
  (:func:`~lit_deep.nn.dropout.quantize_rate`, ``|p - p_q| <= 2**-17``), not ``2**-32``: one 64-bit hash gives
  four draws, and the scaling stays the one MCDropout and MCAlphaDropout use.

Each element is thus a Bernoulli(``1 - p_q``) variable; elements are independent to the extent that
SplitMix64's outputs are (it passes BigCrush; two rows' streams overlap only if their keys differ by a small
multiple of ``G``, chance about ``words / 2**63`` per pair of rows). Everything is integer arithmetic in
``int64`` tensors on the input's device, vectorised over samples, images and words (no loop over images),
so the masks are the same whatever the chunking over images or samples, the batch size, the DDP shard or the
device type. Words are hashed in pieces of at most :data:`PIECE_WORDS` and turned into the output at once.
On the CPU, :meth:`MaskSampler.dropout` of float32/float64 inputs runs the same arithmetic in C
(:mod:`lit_deep.uncertainty._native`, ``_masks.c``: hashed in registers, thresholded and applied in one pass, ~6x
faster); it falls back to these torch ops, with the same bits, where no C compiler is available.
"""

from __future__ import annotations

import functools
import math

import torch

from lit_deep._validate import check_int
from lit_deep.nn.dropout import keep_threshold, quantize_rate
from lit_deep.uncertainty._native import NativeMasks, native_masks

__all__ = ["MAX_INDEX", "PIECE_WORDS", "MaskSampler", "call_key", "mix64"]

_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MULTS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_SHIFTS = (30, 27, 31)
_SAMPLE_BITS = 14  # MAX_SAMPLES = 10,000 < 2**14
#: Dataset indices must be below this (the row counter ``n 2**14 + t + 1`` stays below ``2**63``).
MAX_INDEX = 1 << (63 - _SAMPLE_BITS)
#: Words (4 units each) hashed at once: int64 temporaries of 1 MiB that stay in cache.
PIECE_WORDS = 1 << 17
# ALPHA_PRIME as in lit_deep.nn.dropout.apply_mask.
_ALPHA_PRIME = 1.7580993408473766


def _signed(value: int) -> int:
    """A 64-bit word as the int64 that holds its bits."""
    value &= _M64
    return value - (1 << 64) if value >> 63 else value


def mix64(value: int) -> int:
    """SplitMix64's output function on a Python int (the reference the tensor code matches), as unsigned.

    Example::

        >>> hex(mix64(0x9E3779B97F4A7C15))  # SplitMix64's first output for seed 0
        '0xe220a8397b1dcdaf'
    """
    z = value & _M64
    z = ((z ^ (z >> 30)) * _MULTS[0]) & _M64
    z = ((z ^ (z >> 27)) * _MULTS[1]) & _M64
    return z ^ (z >> 31)


def call_key(seed: int, call: int) -> int:
    """``K_j``, the unsigned 64-bit key of dropout call ``call`` under ``seed`` (see the module docs).

    Example::

        >>> len({call_key(0, 0), call_key(0, 1), call_key(1, 0)})
        3
    """
    return mix64(mix64(seed + _GAMMA) + (call + 1) * _GAMMA)


def _mix64_(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """``mix64`` in place on an int64 tensor (wrapping products; logical shifts as arithmetic shift + mask)."""
    for i, shift in enumerate(_SHIFTS):
        torch.bitwise_right_shift(z, shift, out=tmp)
        tmp.bitwise_and_((1 << (64 - shift)) - 1)
        z.bitwise_xor_(tmp)
        if i < len(_MULTS):
            z.mul_(_signed(_MULTS[i]))
    return z


def _row_keys(key: int, indices: torch.Tensor, first: int, samples: int) -> torch.Tensor:
    """Row keys ``[samples, S]`` int64 of samples ``first, first + 1, ...`` and images ``indices`` ``[S]``."""
    t = torch.arange(first + 1, first + samples + 1, dtype=torch.int64, device=indices.device)
    z = (indices.unsqueeze(0) * (1 << _SAMPLE_BITS) + t.unsqueeze(1)).mul_(_signed(_GAMMA)).add_(_signed(key))
    return _mix64_(z, torch.empty_like(z))


def _words(rows: torch.Tensor, first: int, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Words ``first, first + 1, ...`` of each row key ``rows`` ``[R]``, into ``out`` ``[R, count]``."""
    count = out.shape[1]
    w = torch.arange(first + 1, first + count + 1, dtype=torch.int64, device=rows.device).mul_(_signed(_GAMMA))
    torch.add(rows.unsqueeze(1), w, out=out)
    return _mix64_(out, tmp)


@functools.lru_cache(maxsize=256)
def _constants(p: float) -> tuple[int, float, float, float, float]:
    """The constants of rate ``p``: ``(threshold, scale, a, shift, base)``.

    The int16 keep threshold, plain dropout's ``1 / (1 - p_q)`` and alpha dropout's affine map (``a x + shift``
    where kept, ``base`` where dropped, as ``apply_mask``).
    """
    rate = quantize_rate(p)
    a = ((1.0 - rate) * (1.0 + rate * _ALPHA_PRIME**2)) ** -0.5
    kept, dropped = a * _ALPHA_PRIME * rate, a * _ALPHA_PRIME * (rate - 1.0)
    return keep_threshold(p), 1.0 / (1.0 - rate), a, kept - dropped, dropped


class MaskSampler:
    """Draws (or applies) the keep masks of one image chunk, ``samples`` at a time, following the keyed scheme.

    Usage: :meth:`begin_chunk` with the chunk's dataset indices, then for each group of samples
    :meth:`begin_samples` before the forward pass; each dropout call asks :meth:`mask` or :meth:`dropout`.

    Args:
        seed: the user's seed (any non-negative integer).

    Example::

        >>> sampler = MaskSampler(seed=0)
        >>> sampler.begin_chunk(torch.arange(40, 45))
        >>> sampler.begin_samples(3)
        >>> keep = sampler.mask((4,), 0.5)
        >>> other = MaskSampler(seed=0)
        >>> other.begin_chunk(torch.tensor([42]))
        >>> other.begin_samples(1, first=2)  # the third sample alone
        >>> tuple(keep.shape), keep.dtype, torch.equal(other.mask((4,), 0.5), keep[2:, 2:3])
        ((3, 5, 4), torch.bool, True)
    """

    def __init__(self, seed: int) -> None:
        self.seed = check_int("seed", seed, minimum=0)
        self.samples = 0
        self.first = 0
        self._call = 0
        self._indices = torch.zeros(0, dtype=torch.int64)
        self._kernel: NativeMasks | None = None
        self._kernel_asked = False  # asked at the first CPU dropout, then kept

    @property
    def images(self) -> int:
        """Number of images of the current chunk."""
        return int(self._indices.numel())

    def begin_chunk(self, indices: torch.Tensor) -> None:
        """Start a chunk of images with these dataset indices (int64 ``[S]``, any order, any device).

        Raises:
            ValueError: for an index outside ``[0, MAX_INDEX)``.
        """
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= MAX_INDEX):
            raise ValueError(f"indices: dataset indices must be in [0, 2**{MAX_INDEX.bit_length() - 1})")
        self._indices = indices.to(torch.int64)
        self.first = self.samples = 0

    def begin_samples(self, samples: int, first: int | None = None) -> None:
        """Start a forward pass that computes ``samples`` samples, from sample ``first`` (default: the next one)."""
        self.first = self.first + self.samples if first is None else first
        self.samples = samples
        self._call = 0

    def _next_key(self) -> int:
        call, self._call = self._call, self._call + 1
        return call_key(self.seed, call)

    def _fill(self, key: int, units: int, out: torch.Tensor, p: float) -> None:
        """Write the keep masks ``[samples, S, units]`` of call ``key`` into ``out`` (bool or floating, 0/1)."""
        if self._indices.device != out.device:  # moved once per chunk (e.g. CPU indices, CUDA activations)
            self._indices = self._indices.to(out.device)
        rows = _row_keys(key, self._indices, self.first, self.samples).view(-1)
        flat = out.view(-1, units)
        threshold = keep_threshold(p)
        per_row = (units + 3) // 4
        step_words = min(per_row, PIECE_WORDS)  # a row longer than a piece is cut into pieces of words
        step_rows = max(1, PIECE_WORDS // per_row)
        size = min(rows.numel(), step_rows) * step_words
        buffer, scratch = torch.empty(2, size, dtype=torch.int64, device=out.device)
        for r in range(0, rows.numel(), step_rows):
            part = rows[r : r + step_rows]
            for w in range(0, per_row, step_words):
                count = min(step_words, per_row - w)
                shape = (part.numel(), count)
                words = _words(part, w, buffer[: shape[0] * count].view(shape), scratch[: shape[0] * count].view(shape))
                lanes = min(4 * count, units - 4 * w)
                target = flat[r : r + part.numel(), 4 * w : 4 * w + lanes]
                torch.ge(words.view(torch.int16)[:, :lanes], threshold, out=target)

    def mask(
        self, shape: tuple[int, ...], p: float, dtype: torch.dtype = torch.bool, device: torch.device | None = None
    ) -> torch.Tensor:
        """Keep mask ``[samples, S, *shape]`` (0/1 of ``dtype``) for the next dropout call (``shape``: per image)."""
        key = self._next_key()
        device = self._indices.device if device is None else device
        out = torch.empty(self.samples, self.images, *shape, dtype=dtype, device=device)
        self._fill(key, math.prod(shape), out, p)
        return out

    def _native(self) -> NativeMasks | None:
        """The native kernel, asked for once per sampler (not once per dropout call of every pass)."""
        if not self._kernel_asked:
            self._kernel, self._kernel_asked = native_masks(), True
        return self._kernel

    def dropout(self, x: torch.Tensor, p: float, alpha: bool = False) -> torch.Tensor:
        """Dropout of ``x`` ``[1 or samples, S, ...]`` with the next call's masks on its device: ``[samples, S, ...]``.

        The same values as :func:`~lit_deep.nn.dropout.apply_mask` with :meth:`mask`, without a separate mask:
        the 0/1 keep values are written into the output, which is then scaled by the (pre-scaled) input.
        """
        key = self._next_key()
        out = torch.empty(self.samples, *x.shape[1:], dtype=x.dtype, device=x.device)
        threshold, scale, a, shift, base = _constants(p)
        native = self._native() if NativeMasks.supports(x) and out.numel() else None
        if native is not None:  # the same masks and roundings in one pass (``_masks.c``)
            flat_x = x.contiguous().view(x.shape[0] * x.shape[1], -1)
            flat_out = out.view(out.shape[0] * out.shape[1], -1)
            args = (a, shift, base) if alpha else None
            return native.dropout(key, self._indices, self.first, flat_x, flat_out, threshold, scale, args).view_as(out)
        self._fill(key, math.prod(x.shape[2:]), out, p)
        if not alpha:
            # 0 + keep * x / (1 - p_q): one pass, the rounding of apply_mask's x * keep * scale.
            zero = torch.zeros((), dtype=x.dtype, device=x.device)
            return torch.addcmul(zero, out, x, value=scale, out=out)
        return torch.addcmul(torch.tensor(base, dtype=x.dtype, device=x.device), out, x.mul(a).add_(shift), out=out)
