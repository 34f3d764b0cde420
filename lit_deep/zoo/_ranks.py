"""Rank coordination for zoo downloads: under DDP only local rank 0 touches the network; log once per job."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import torch.distributed as dist

from lit_deep.zoo._transport import Unreachable, offline

__all__ = ["WAIT_ENV", "coordinated", "local_rank", "log_once", "rank"]

_T = TypeVar("_T")
#: The package's logger. No handler is added: an application configures logging (``lit-deep`` does, for its output).
_log = logging.getLogger("lit_deep.zoo")
#: Seconds a non-zero local rank waits for rank 0's download before trying itself (default 300).
WAIT_ENV = "LIT_DEEP_HUB_WAIT"


#: the variables launchers (torchrun, Lightning, SLURM, jsrun) set for a process's rank, as Lightning reads them.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def rank() -> int:
    for variable in _RANK_VARIABLES:
        value = os.environ.get(variable)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def log_once(message: str) -> None:
    """Log once per job (rank 0 by the launchers' variables) through the ``lit_deep.zoo`` logger (INFO).

    Example::

        >>> log_once("lit_deep.zoo: nothing to report")  # no handler is added: the application decides
    """
    if rank() == 0:
        _log.info(message)


def local_rank() -> int:
    for variable in ("LOCAL_RANK", "SLURM_LOCALID", "JSM_NAMESPACE_LOCAL_RANK"):
        value = os.environ.get(variable)
        if value is not None and value.isdigit():
            return int(value)
    # No launcher variable: a single-node group started by hand, where the global rank is the local one.
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def coordinated(retrieve: Callable[[bool], _T], probe: Callable[[], str]) -> _T:
    """Run ``retrieve(local_only)`` so that only local rank 0 touches the network (while it can fill the cache)."""
    if dist.is_available() and dist.is_initialized():
        rank0 = local_rank() == 0
        result: _T | None = None
        error: Exception | None = None
        if rank0:
            try:
                result = retrieve(False)
            except Exception as err:  # re-raised after the barrier, so the other ranks are not left waiting
                error = err
        dist.barrier()
        if error is not None:
            raise error
        return result if result is not None else retrieve(True)
    if local_rank() == 0 or offline():
        return retrieve(False)
    # Ranks launched (e.g. by Lightning) before the process group exists: wait for rank 0 to fill the cache.
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV, "300"))
    first = True
    while time.monotonic() < deadline:
        try:
            return retrieve(True)
        except Unreachable:
            state = probe() if first else "serves"
            # Rank 0 cannot fill the cache either: do what it does, at once, instead of waiting for a download
            # that will not come. The cache just missed, so an unreachable Hub leaves the shipped copy.
            if state == "unreachable":
                raise
            if state == "refuses":  # repo or file not there: the download attempt says which
                return retrieve(False)
            first = False
            time.sleep(0.2)
    return retrieve(False)
