"""Batches sliced from in-memory tensors, sharded per DDP rank without padding.

A ``DataLoader`` over a map-style dataset collates every item in Python; for 28x28 images that costs more
than the model. Here the sampler yields whole batches of indices (an index tensor when shuffled, a ``slice``
when in order) and the dataset answers with one tensor gather, so a batch costs one indexing operation.

The sampler subclasses ``DistributedSampler`` so that Lightning recognises it as already distributed and
does not wrap it: it shards by rank itself. Training shards have equal length on every rank (DDP needs the
same number of steps everywhere); evaluation shards are contiguous and unpadded, so every image is counted
exactly once (Lightning's injected sampler pads with duplicates).

Resuming mid-epoch: the sampler knows how many batches of which epoch it has handed out and can start the next
iteration after them (``state_dict`` / ``load_state_dict``); :class:`ResumableLoader` exposes that state to
Lightning's stateful-dataloader protocol, which saves it in checkpoints and restores it on resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lit_deep._validate import check_int

__all__ = ["DistributedBatchSampler", "ResumableLoader", "TensorBatches"]

# What must match for a saved mid-epoch position to mean the same batches in this run.
_ORDER_KEYS = ("size", "batch_size", "seed", "num_replicas", "drop_last", "even_shards")


class TensorBatches(Dataset):
    """A dataset whose items are whole batches: ``dataset[index_tensor_or_slice] -> (x, y)``.

    Args:
        inputs: ``[N, ...]`` float tensor.
        targets: ``[N]`` int64 tensor.
        transform: an optional batch transform applied to ``x`` (training-time augmentation).

    Example::

        >>> data = TensorBatches(torch.arange(10.0).view(5, 2), torch.arange(5))
        >>> data[slice(1, 3)][1].tolist(), len(data)
        ([1, 2], 5)
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"targets: {targets.shape[0]} targets for {inputs.shape[0]} inputs")
        self.inputs = inputs
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs[index]
        return (self.transform(x) if self.transform is not None else x), self.targets[index]


class DistributedBatchSampler(DistributedSampler):
    """Yields this rank's batches of indices for a :class:`TensorBatches` dataset; resumable mid-epoch.

    A ``DistributedSampler`` to Lightning (which then leaves it alone and calls its ``set_epoch``) that works
    without a process group: it does not call ``DistributedSampler.__init__``, which needs one.

    Args:
        size: number of items in the dataset.
        batch_size: items per batch.
        shuffle: reshuffle every epoch (seeded by ``seed + epoch``, identical on every rank).
        seed: base seed of the shuffle.
        drop_last: drop the last incomplete batch.
        num_replicas: number of ranks; by default read from ``torch.distributed`` (1 when not initialised).
        rank: this rank; by default read from ``torch.distributed``.
        even_shards: give every rank the same number of items (training) by dropping the remainder of the
            shuffled order, instead of contiguous unpadded shards (evaluation).

    The sampler is resumable: :meth:`state_dict` records the epoch being iterated and how many of its batches
    were handed out; after :meth:`load_state_dict` the next iteration of that epoch continues after them.

    Example::

        >>> sampler = DistributedBatchSampler(10, batch_size=4, shuffle=False, num_replicas=2, rank=1)
        >>> [(s.start, s.stop) for s in sampler], len(sampler)
        ([(5, 9), (9, 10)], 2)
        >>> shuffled = DistributedBatchSampler(10, batch_size=3, shuffle=True)
        >>> first = iter(shuffled)
        >>> consumed = next(first)
        >>> resumed = DistributedBatchSampler(10, batch_size=3, shuffle=True)
        >>> resumed.load_state_dict(shuffled.state_dict())
        >>> [b.tolist() for b in resumed] == [b.tolist() for b in first]
        True
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        even_shards: bool | None = None,
    ) -> None:
        # DistributedSampler.__init__ is deliberately not called: it requires an initialised process group.
        check_int("batch_size", batch_size, minimum=1)
        initialised = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if initialised else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank: {self.rank} is outside 0..{self.num_replicas - 1}")
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.even_shards = shuffle if even_shards is None else even_shards
        self.epoch = 0
        self._iter_epoch = 0  # the epoch of the current (or last) iteration
        self._yielded = 0  # batches of that iteration handed out so far
        self._resume: tuple[int, int] | None = None  # (epoch, batches) to skip at the next iteration
        self._order: torch.Tensor | None = None  # this rank's shuffled indices of that iteration

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next shuffle (Lightning calls this every epoch)."""
        self.epoch = epoch

    def _shard_bounds(self) -> tuple[int, int]:
        if self.even_shards:
            per_rank = self.size // self.num_replicas
            return self.rank * per_rank, (self.rank + 1) * per_rank
        base, extra = divmod(self.size, self.num_replicas)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def __len__(self) -> int:
        start, stop = self._shard_bounds()
        count = stop - start
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | slice]:
        start, stop = self._shard_bounds()
        n_batches = len(self)
        skip = 0
        if self._resume is not None:  # read at the first batch: a state loaded after iter() still counts
            epoch, batches = self._resume
            self._resume = None
            skip = batches if epoch == self.epoch and batches < n_batches else 0
        self._iter_epoch, self._yielded = self.epoch, skip
        self._order = (
            torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))[start:stop]
            if self.shuffle
            else None
        )
        for b in range(skip, n_batches):
            self._yielded = b + 1
            yield self.batch_indices(b)

    def batch_indices(self, batch: int) -> torch.Tensor | slice:
        """The dataset indices of batch ``batch`` of the iteration under way (or the last one): what it yields.

        Lets a consumer that sees only the batch (a callback) say which examples it holds, e.g. to cache per
        example: the ``batch_idx`` Lightning passes to the batch hooks counts batches of the epoch as this does.

        Example::

            >>> sampler = DistributedBatchSampler(10, batch_size=4, shuffle=True, seed=1)
            >>> batches = list(sampler)
            >>> all(torch.equal(sampler.batch_indices(b), batches[b]) for b in range(3))
            True
            >>> DistributedBatchSampler(10, batch_size=4, num_replicas=2, rank=1).batch_indices(1)
            slice(9, 10, None)
        """
        check_int("batch", batch, minimum=0)
        start, stop = self._shard_bounds()
        if self._order is not None:
            return self._order[batch * self.batch_size : (batch + 1) * self.batch_size]
        if self.shuffle:  # before the first iteration: the order of the epoch set now
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return torch.randperm(self.size, generator=generator)[start:stop][
                batch * self.batch_size : (batch + 1) * self.batch_size
            ]
        lo = min(start + batch * self.batch_size, stop)
        return slice(lo, min(lo + self.batch_size, stop))

    def state_dict(self) -> dict[str, int]:
        """The position: the epoch being iterated, the batches of it handed out, and the order's settings."""
        state = {"epoch": self._iter_epoch, "batches": self._yielded, "shuffle": int(self.shuffle)}
        return {**state, **{key: int(getattr(self, key)) for key in _ORDER_KEYS}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue after the saved position at the next iteration of the saved epoch.

        Raises:
            ValueError: a mid-epoch position saved with other settings (batch size, data size, seed, number of
                processes), whose remaining batches would not be those of the interrupted run.
        """
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        if batches and batches < len(self):
            for key in _ORDER_KEYS:
                if key in state_dict and int(state_dict[key]) != int(getattr(self, key)):
                    raise ValueError(
                        f"{key}: the checkpoint stopped in the middle of epoch {epoch} with {key}="
                        f"{state_dict[key]}, this run has {getattr(self, key)}; resume with the same data settings "
                        "(or from an end-of-epoch checkpoint)"
                    )
        self._resume = (epoch, batches)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a :class:`DistributedBatchSampler` with Lightning's stateful-dataloader protocol.

    Lightning saves ``state_dict()`` of every training loader that has one in its checkpoints and calls
    ``load_state_dict`` on resume (``trainer.fit(..., ckpt_path=...)``), so a run stopped in the middle of an
    epoch continues with the batches it had not yet seen, in the same order. The loader draws no number from
    the global random generator (it gets its own ``generator``), so creating it does not shift dropout masks.

    Args:
        dataset: the batches' dataset (:class:`TensorBatches`).
        sampler: the :class:`DistributedBatchSampler` that yields whole batches of indices.

    Example::

        >>> data = TensorBatches(torch.arange(6.0).view(6, 1), torch.arange(6))
        >>> loader = ResumableLoader(data, DistributedBatchSampler(6, batch_size=2))
        >>> batches = iter(loader)
        >>> _ = next(batches)
        >>> again = ResumableLoader(data, DistributedBatchSampler(6, batch_size=2))
        >>> again.load_state_dict(loader.state_dict())
        >>> [y.tolist() for _, y in again]
        [[2, 3], [4, 5]]
    """

    def __init__(self, dataset: TensorBatches, sampler: DistributedBatchSampler) -> None:
        # batch_size=None: the sampler already yields whole batches; no per-item collate.
        super().__init__(dataset, sampler=sampler, batch_size=None, num_workers=0, generator=torch.Generator())
        self.batches = sampler

    def state_dict(self) -> dict[str, int]:
        """The sampler's position (see :meth:`DistributedBatchSampler.state_dict`)."""
        return self.batches.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the sampler at the saved position (see :meth:`DistributedBatchSampler.load_state_dict`)."""
        self.batches.load_state_dict(state_dict)
