"""The process's random-number generator states in a checkpoint, one per global rank, as plain tensors.

Lightning checkpoints do not hold the global generators, so after ``trainer.fit(..., ckpt_path=...)`` dropout and
alpha dropout would draw other masks than the uninterrupted run. lit_deep's LightningModules save the states of
torch's CPU generator, the current CUDA device's generator, NumPy's and Python's ``random`` **of every rank**
(gathered on the strategy's device when the checkpoint is written) and each rank restores its own when the
checkpoint is loaded, so resuming is exact under DDP too. A checkpoint written with another world size restores
nothing (one warning line): the ranks' streams cannot be mapped onto a different number of processes. Everything
is a tensor or a number, so checkpoints still load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["gather_rng_states", "rng_state", "set_rng_state"]

#: The checkpoint key of the per-rank states.
KEY = "lit_deep_rng"


def rng_state(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """This process's generator states as int64 tensors (the CUDA one of ``device`` when it is a CUDA device).

    Example::

        >>> state = rng_state()
        >>> a = torch.rand(2)
        >>> set_rng_state(state)
        >>> torch.equal(torch.rand(2), a), sorted(state)
        (True, ['cuda', 'numpy', 'numpy_meta', 'python', 'torch'])
    """
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # the legacy tuple form: ('MT19937', keys, pos, has_gauss, cached)
    version, words, gauss_next = random.getstate()
    if device is not None and device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device).long()
    else:
        cuda = torch.zeros(0, dtype=torch.int64)
    gauss = float("nan") if gauss_next is None else float(gauss_next)
    return {
        "torch": torch.get_rng_state().long(),
        "cuda": cuda,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        # pos, has_gauss, cached gaussian (bit pattern of the float64), python's version and gauss_next
        "numpy_meta": torch.tensor([pos, has_gauss, _bits(float(cached)), version, _bits(gauss)], dtype=torch.int64),
        "python": torch.tensor(list(words), dtype=torch.int64),
    }


def _bits(value: float) -> int:
    return int(np.array(value, dtype=np.float64).view(np.int64))


def _float(bits: int) -> float:
    return float(np.array(bits, dtype=np.int64).view(np.float64))


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned (the CUDA state onto ``device``, when both are there).

    Example::

        >>> set_rng_state(rng_state())  # the same state again: nothing changes
    """
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda = state.get("cuda")
    if cuda is not None and cuda.numel() and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda.to(torch.uint8).cpu(), device)
    pos, has_gauss, cached, version, gauss = (int(v) for v in state["numpy_meta"].tolist())
    keys = state["numpy"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, _float(cached)))
    gauss_next = _float(gauss)
    words = tuple(int(w) for w in state["python"].tolist())
    random.setstate((version, words, None if gauss_next != gauss_next else gauss_next))


def gather_rng_states(
    all_gather: Callable[[torch.Tensor], Any], world_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Every rank's :func:`rng_state`, stacked ``[world_size, ...]`` on the CPU (a collective: call on every rank).

    The tensors are gathered on ``device`` (the strategy's root device: NCCL refuses CPU tensors) with
    ``all_gather`` (``LightningModule.all_gather``).

    Example::

        >>> states = gather_rng_states(lambda t: t, 1, torch.device("cpu"))
        >>> states["torch"].shape[0]
        1
    """
    mine = rng_state(device)
    if world_size == 1:
        return {k: v.unsqueeze(0) for k, v in mine.items()}
    return {k: torch.as_tensor(all_gather(v.to(device))).reshape(world_size, -1).cpu() for k, v in mine.items()}
