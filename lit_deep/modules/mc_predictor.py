"""MC dropout in ``trainer.predict``: per-image seeding by dataset index, and the gather across ranks.

Used by :class:`~lit_deep.Classifier` when ``mc_samples > 0``. At ``on_predict_start`` the dataset indices
of every predict batch are read from the dataloader's (batch) sampler, which iterates in a fixed order for
prediction; each batch is predicted with :func:`~lit_deep.uncertainty.mc_predict` and those indices, so an
image's masks do not depend on the rank that predicts it.

The results reach ``trainer.predict`` through public APIs only: the Classifier's MC ``predict_step`` takes
Lightning's ``dataloader_iter`` (the documented step signature that hands the step the batch iterator; Lightning
notes it as experimental), and one call consumes the ``trainer.num_predict_batches`` batches of one dataloader,
gathers the ranks' results (sorted by dataset index and deduplicated, since a padding sampler repeats images)
and returns one :class:`MCPrediction`. ``trainer.predict`` therefore returns ``[MCPrediction]`` per dataloader,
in dataset order, on every rank. Under DDP every rank must have at least one batch of every dataloader.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, RandomSampler

from lit_deep._device import batch_inputs
from lit_deep._validate import check_int, check_seed
from lit_deep.uncertainty.predict import mc_predict
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = ["MCPredictor", "index_batches", "settle_seed", "shuffles"]


def _as_indices(item: Any) -> torch.Tensor:
    if isinstance(item, slice):
        return torch.arange(item.start or 0, item.stop, item.step or 1)
    if isinstance(item, torch.Tensor):
        return item.reshape(-1).long()
    if isinstance(item, int):
        return torch.tensor([item])
    return torch.as_tensor(list(item), dtype=torch.int64)


def index_batches(loader: object) -> list[torch.Tensor] | None:
    """The dataset indices of each batch ``loader`` yields, or ``None`` if its sampler does not say.

    Example::

        >>> from lit_deep.data import DistributedBatchSampler
        >>> from lit_deep.data._batches import TensorBatches
        >>> data = TensorBatches(torch.zeros(5, 1), torch.zeros(5, dtype=torch.long))
        >>> loader = DataLoader(data, sampler=DistributedBatchSampler(5, 2, num_replicas=2, rank=1), batch_size=None)
        >>> [b.tolist() for b in index_batches(loader)]
        [[3, 4]]
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    source = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    # A copy: for prediction Lightning wraps the batch sampler in an object that is its own iterator, which the
    # loader's iterator shares; iterating the original here would exhaust the batches the loop is about to draw.
    return [_as_indices(item) for item in copy.copy(source)]


def shuffles(loader: object) -> bool:
    """Whether ``loader``'s (batch) sampler, or a sampler it wraps, draws a random order.

    :func:`index_batches` iterates the sampler ahead of the loop: for such a sampler that is not the order the
    loop then draws (and it consumes random numbers).

    Example::

        >>> shuffles(DataLoader(torch.zeros(4), shuffle=True)), shuffles(DataLoader(torch.zeros(4)))
        (True, False)
    """
    for sampler in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        for _ in range(4):  # samplers wrap samplers a few levels deep at most
            if sampler is None:
                break
            if isinstance(sampler, RandomSampler) or getattr(sampler, "shuffle", False) is True:
                return True
            sampler = getattr(sampler, "sampler", None)
    return False


def _loaders(trainer: pl.Trainer) -> list[object]:
    loaders = trainer.predict_dataloaders
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _all_gather(module: pl.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """``module.all_gather`` of a tensor on the strategy's root device (NCCL refuses CPU tensors)."""
    gathered = module.all_gather(tensor.to(module.trainer.strategy.root_device))
    assert isinstance(gathered, torch.Tensor)
    return gathered


def settle_seed(seed: int | None, trainer: pl.Trainer) -> int:
    """``seed``, or when it is ``None`` one drawn on rank 0 from the operating system and shared with every rank.

    The draw uses :mod:`secrets`, so torch's, NumPy's and Python's generators are left where they were.

    Example::

        >>> settle_seed(7, pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False))
        7
    """
    drawn = seed if seed is not None else secrets.randbits(62)
    return int(trainer.strategy.broadcast(drawn, src=0))


class MCPredictor:
    """The state of one MC-dropout ``trainer.predict`` run (see the module docs).

    Args:
        samples: ``T`` per image.
        seed: seed of the masks; ``None`` draws one on rank 0 and broadcasts it.
        batch_size: images per chunk inside :func:`~lit_deep.uncertainty.mc_predict`.

    Example::

        >>> MCPredictor(10, seed=0).samples
        10
    """

    def __init__(self, samples: int, seed: int | None = None, batch_size: int = 256) -> None:
        check_int("mc_samples", samples, minimum=1)
        check_seed("mc_seed", seed)
        self.samples = samples
        self.seed = seed
        self.batch_size = batch_size
        self.results: list[MCPrediction | None] = []
        self._seed = 0
        self._batches: list[list[torch.Tensor] | None] = []
        self._parts: list[list[tuple[torch.Tensor, MCPrediction]]] = []
        self._seen: list[int] = []

    def start(self, trainer: pl.Trainer) -> None:
        """Read the batches' dataset indices and settle the seed (call at ``on_predict_start``)."""
        self._seed = settle_seed(self.seed, trainer)
        self._batches = [index_batches(loader) for loader in _loaders(trainer)]
        if trainer.world_size > 1 and any(b is None for b in self._batches):
            raise ValueError(
                "mc_samples: under DDP the predict dataloaders must be DataLoaders over map-style datasets "
                "whose sampler gives each image's dataset index (e.g. FashionMNISTDataModule's)"
            )
        if trainer.world_size > 1:
            counts = torch.tensor([float(n) for n in trainer.num_predict_batches])
            flag = torch.tensor(float((counts == 0).any()), device=trainer.strategy.root_device)
            empty = trainer.strategy.reduce(flag, reduce_op="sum")
            if float(empty) > 0:
                raise ValueError(
                    "mc_samples: under DDP every rank needs at least one batch of every predict dataloader "
                    f"(this rank has {[int(n) for n in counts.tolist()]})"
                )
        self._parts = [[] for _ in self._batches]
        self._seen = [0 for _ in self._batches]
        self.results = []

    def step(self, model: nn.Module, x: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> MCPrediction:
        """MC prediction of one batch, seeded by the images' dataset indices."""
        batches = self._batches[dataloader_idx]
        if batches is None:
            indices = torch.arange(self._seen[dataloader_idx], self._seen[dataloader_idx] + x.shape[0])
        else:
            indices = batches[batch_idx]
            if indices.numel() != x.shape[0]:
                raise ValueError(
                    f"mc_samples: batch {batch_idx} has {x.shape[0]} images, its sampler said {indices.numel()}"
                )
        self._seen[dataloader_idx] += x.shape[0]
        pred = mc_predict(
            model, x, self.samples, seed=self._seed, batch_size=self.batch_size, enable_dropout=True, indices=indices
        )
        self._parts[dataloader_idx].append((indices, pred))
        return pred

    def predict(self, module: pl.LightningModule, dataloader_iter: Iterator[Any]) -> MCPrediction | None:
        """Predict every batch of the next dataloader and gather the ranks' results (the MC ``predict_step``).

        Returns:
            The dataloader's :class:`MCPrediction` in dataset order (``None`` if it yielded no image).
        """
        trainer = module.trainer
        loader = len(self.results)
        total = trainer.num_predict_batches[loader]
        done = 0
        while done < total:
            try:
                batch, batch_idx, dataloader_idx = next(dataloader_iter)
            except StopIteration:  # a loader without a length: its batches ran out
                break
            if dataloader_idx != loader:
                raise ValueError(f"mc_samples: expected a batch of dataloader {loader}, got one of {dataloader_idx}")
            batch = trainer.strategy.batch_to_device(batch, dataloader_idx=dataloader_idx)
            # Lightning converts the inputs of the steps it feeds; this step draws its own batches, so it converts
            # them as the precision plugin would (a bf16-true model takes bf16 inputs).
            x = trainer.precision_plugin.convert_input(batch_inputs(batch))
            model = getattr(module, "model", None)
            if not isinstance(model, nn.Module):
                raise ValueError(f"module: MC prediction needs the network in `.model`, got {type(module).__name__}")
            self.step(model, x, batch_idx, dataloader_idx)
            done += 1
        self.results.append(self._gather(module, self._parts[loader]))
        return self.results[-1]

    @staticmethod
    def _gather(module: pl.LightningModule, parts: list[tuple[torch.Tensor, MCPrediction]]) -> MCPrediction | None:
        trainer = module.trainer
        device = trainer.strategy.root_device  # the collectives' device, and where the result lives
        classes = parts[0][1].num_classes if parts else 0
        dtype = torch.promote_types(parts[0][1].probs.dtype, torch.float32) if parts else torch.float32
        empty_idx = torch.zeros(0, dtype=torch.int64, device=device)
        indices = torch.cat([i.to(device) for i, _ in parts]) if parts else empty_idx
        empty = torch.zeros(0, 0, dtype=torch.float64, device=device)
        packed = torch.cat([p.pack().to(device) for _, p in parts]) if parts else empty
        if trainer.world_size > 1:
            sizes = _all_gather(module, torch.tensor([indices.numel(), classes], device=device)).reshape(-1, 2)
            rows, classes = int(sizes[:, 0].max()), int(sizes[:, 1].max())
            width = 2 * classes + 4
            padded_idx = torch.full((rows,), -1, dtype=torch.int64, device=device)
            padded_idx[: indices.numel()] = indices
            padded = torch.zeros(rows, width, dtype=torch.float64, device=device)
            padded[: packed.shape[0], : packed.shape[1]] = packed
            all_idx = _all_gather(module, padded_idx).reshape(-1)
            all_packed = _all_gather(module, padded).reshape(-1, width)
            valid = all_idx >= 0
            indices, packed = all_idx[valid], all_packed[valid]
        if indices.numel() == 0:
            return None
        order = torch.sort(indices, stable=True).indices
        indices, packed = indices[order], packed[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        return MCPrediction.unpack(packed[first], classes, dtype)
