"""The process's random-number generator states as checkpoint-safe data (tensors, ints, lists).

Lightning checkpoints do not hold the global generators, so after ``trainer.fit(..., ckpt_path=...)`` dropout
and alpha dropout draw other masks than the uninterrupted run would. ``FashionMNISTDataModule`` saves these
states with its own and restores them when Lightning restores the DataModule (before training resumes).
Everything is plain data, so checkpoints still load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state"]


def get_rng_state() -> dict[str, Any]:
    """The states of torch's CPU (and initialised CUDA) generators, NumPy's and Python's ``random``.

    Example::

        >>> state = get_rng_state()
        >>> a = torch.rand(2)
        >>> set_rng_state(state)
        >>> torch.equal(torch.rand(2), a), sorted(state)
        (True, ['numpy', 'python', 'torch', 'torch_cuda'])
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # the legacy tuple form: ('MT19937', keys, pos, has_gauss, cached)
    version, words, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "torch_cuda": cuda,
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "words": list(words), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing parts are left alone).

    Example::

        >>> set_rng_state({})  # nothing to restore
    """
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("torch_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    if "numpy" in state:
        saved = state["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["kind"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))
    if "python" in state:
        saved = state["python"]
        random.setstate((saved["version"], tuple(saved["words"]), saved["gauss_next"]))
