"""FreezeUnfreeze's frozen-feature cache: the frozen, deterministic part of the model runs once per example.

While parameters are frozen, what the model computes from them before the first trainable or random operation is
a fixed function of each example. :class:`FeatureCache` cuts the root model's traced graph there
(:func:`lit_deep.nn.graph.split_graph`, the cut ``mc_predict`` uses), computes the *frontier* values of each
training and validation example the first time its batch comes, keeps them (one tensor per frontier value, on the
module's device, indexed by the example's position in the dataset) and runs only the rest of the graph when the
example comes again. The root model's ``forward`` is replaced (an instance attribute, removed afterwards) by one
that does this for the batches the callback announced (:meth:`FeatureCache.begin`), and runs the model's own
forward for any other call.

Which examples a batch holds comes from lit_deep's own batching: the dataset is a :class:`TensorBatches` (fixed
in-memory tensors) sliced by a :class:`DistributedBatchSampler`, which says the indices of batch ``batch_idx``
(:meth:`~lit_deep.data._batches.DistributedBatchSampler.batch_indices`); the order, the shards and the batches are
those of a run without the cache. Exactness is checked, not assumed: a batch whose inputs are not the dataset's
examples at those indices turns the cache off (one info line); a cached row is used only if its input matches the
row's fingerprint; a frozen parameter changed in place (its version counter moved) empties the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, fx, nn

from lit_deep.callbacks.select import BATCH_NORMS
from lit_deep.models import Preprocess
from lit_deep.nn import MCAlphaDropout, MCDropout
from lit_deep.nn.dropout import TORCH_DROPOUT_LAYERS
from lit_deep.nn.graph import GraphSplit, Untraceable, split_graph, trace

__all__ = ["FeatureCache", "random_sources"]

#: Layers whose output is random (in training mode; the MC ones always): traced as single nodes, never cached.
RANDOM_LAYERS: tuple[type[nn.Module], ...] = (*TORCH_DROPOUT_LAYERS, nn.RReLU, MCDropout, MCAlphaDropout)
#: Normalisation layers that use (and update) batch statistics in training mode, by their public classes.
_BATCH_STATS: tuple[type[nn.Module], ...] = (*BATCH_NORMS, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_READ_ONLY_BUFFERS: tuple[type[nn.Module], ...] = (Preprocess,)
#: Functions and tensor methods that draw random numbers (or may, e.g. dropout with training=self.training).
_RANDOM_FUNCTIONS = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.rrelu,
    F.gumbel_softmax, F.batch_norm, F.instance_norm, torch.dropout, torch.alpha_dropout, torch.feature_dropout,
    torch.feature_alpha_dropout, torch.rand, torch.rand_like, torch.randn, torch.randn_like, torch.randint,
    torch.randint_like, torch.randperm, torch.bernoulli, torch.multinomial, torch.normal, torch.poisson,
    torch.batch_norm, torch.instance_norm,
}  # fmt: skip
_RANDOM_METHODS = {
    "bernoulli", "bernoulli_", "uniform_", "normal_", "random_", "exponential_", "geometric_", "cauchy_",
    "log_normal_", "multinomial",
}  # fmt: skip
_SPLITS = ("train", "val")


def _random_module(module: nn.Module) -> bool:
    """A random layer (rate > 0), or a layer in training mode that normalises with the batch's statistics.

    A module the tracer kept whole is code it did not see: one with buffers of its own, in training mode, may update
    them (as BatchNorm does) and counts as random, unless it is PyTorch's (the norms are checked by type) or a
    lit_deep layer known to only read them (``Preprocess``).
    """
    for m in module.modules():
        if isinstance(m, RANDOM_LAYERS) and (isinstance(m, nn.RReLU) or float(getattr(m, "p", 0.0)) > 0):
            return True
        if not m.training or isinstance(m, _READ_ONLY_BUFFERS):
            continue
        if isinstance(m, _BATCH_STATS):
            return True
        if not type(m).__module__.startswith("torch.") and any(True for _ in m.buffers(recurse=False)):
            return True
    return False


def random_sources(gm: fx.GraphModule) -> list[fx.Node]:
    """The nodes of ``gm`` that a cached frozen prefix must not include: trainable, random or batch-dependent.

    A module node whose module holds a parameter that requires gradients, is a random layer (dropout of rate > 0,
    in either mode, so that training and validation cut at the same place; ``RReLU``), or normalises with batch
    statistics or updates buffers in training mode (BatchNorm not frozen in eval mode); an attribute read of a
    tensor that requires gradients; a call to a random function or method (functional dropout whatever its
    ``training`` argument, ``torch.rand*``, ``bernoulli``, ...; also functional batch norm).

    Example::

        >>> from lit_deep.nn.graph import trace
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Linear(4, 2)).requires_grad_(False)
        >>> [n.target for n in random_sources(trace(net, RANDOM_LAYERS))]
        ['1']
    """
    found = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            hit = any(p.requires_grad for p in module.parameters()) or _random_module(module)
        elif node.op == "get_attr":
            value = _attribute(gm, str(node.target))
            hit = isinstance(value, Tensor) and value.requires_grad
        elif node.op == "call_function":
            hit = node.target in _RANDOM_FUNCTIONS
        else:
            hit = node.op == "call_method" and node.target in _RANDOM_METHODS
        if hit:
            found.append(node)
    return found


def _attribute(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _fingerprint(x: Tensor, weights: Tensor) -> Tensor:
    """One float32 number per row of ``x`` ``[B, ...]``: a fixed weighted sum, to recognise an example's input."""
    return torch.mv(x.detach().flatten(1).to(torch.float32), weights)


@dataclass
class _Split:
    """The cache of one split (training or validation): its data, the cut, and the stored frontier values."""

    data: Any
    sampler: Any
    cut: GraphSplit | None = None
    training: bool = True
    stores: list[Tensor] = field(default_factory=list)
    filled: Tensor | None = None  # [N] bool, CPU: which examples are stored
    prints: Tensor | None = None  # [N] float32 on the stores' device: their inputs' fingerprints
    weights: Tensor | None = None  # [D] float32: the fingerprint's weights
    watched: list[tuple[Tensor, int]] = field(default_factory=list)  # frozen parameters and their versions
    nbytes: int = 0
    declined: str | None = None


class FeatureCache:
    """Per-example frontier values of the frozen part, for the training and validation data of one fit.

    Args:
        limit_bytes: the most bytes the stored values of both splits may take (per process).
        owner: the name that starts the info lines.

    Example::

        >>> cache = FeatureCache(2**20)
        >>> cache.limit_bytes, cache.active
        (1048576, False)
    """

    def __init__(self, limit_bytes: int, owner: str = "FreezeUnfreeze") -> None:
        self.limit_bytes = limit_bytes
        self.owner = owner
        self._root: nn.Module | None = None
        self._original: Callable[..., Any] | None = None
        self._had_own_forward = False
        self._splits: dict[str, _Split | str] = {}  # split -> its cache, or why it has none
        self._current: tuple[str, int] | None = None  # the batch the next forward call belongs to
        self._said: set[str] = set()

    @property
    def active(self) -> bool:
        """Whether a split has stored values now."""
        return any(isinstance(s, _Split) and s.cut is not None and s.declined is None for s in self._splits.values())

    def info(self, message: str) -> None:
        """One info line (each distinct message once per fit)."""
        if message not in self._said:
            self._said.add(message)
            rank_zero_info(f"{self.owner}: cache_features: {message}")

    # ----------------------------------------------------------------- wiring
    def install(self, root: nn.Module) -> None:
        """Route ``root``'s forward through the cache (announced batches only)."""
        self.uninstall()
        self._root = root
        self._had_own_forward = "forward" in vars(root)
        self._original = root.forward
        root.forward = self._forward

    def uninstall(self) -> None:
        """Give ``root`` its own forward back and drop every stored value."""
        if self._root is not None:
            if self._had_own_forward and self._original is not None:
                self._root.forward = self._original
            else:
                vars(self._root).pop("forward", None)
        self._root, self._original, self._current = None, None, None
        self._splits = {}

    def reset(self) -> None:
        """Forget the cuts and stored values (what is frozen changed): both splits are cut again at their next batch."""
        self._splits = {name: s for name, s in self._splits.items() if isinstance(s, str)}  # data reasons stay
        self._said = set()

    def begin(self, split: str, batch_idx: int, loader: Any) -> None:
        """Announce that the next forward call computes batch ``batch_idx`` of ``loader`` (``"train"`` or ``"val"``)."""
        self._current = None
        if self._root is None:
            return
        if split not in self._splits:
            self._splits[split] = self._source(split, loader)
            if isinstance(self._splits[split], str):
                self.info(f"{split} runs without the cache: {self._splits[split]}")
        state = self._splits[split]
        if isinstance(state, _Split) and state.declined is None:
            self._current = (split, batch_idx)

    def end(self) -> None:
        """The announced batch is done."""
        self._current = None

    @staticmethod
    def _source(split: str, loader: Any) -> _Split | str:
        """The split's dataset and sampler, or why it cannot be cached."""
        if isinstance(loader, (list, tuple)):
            if len(loader) != 1:
                return f"{len(loader)} dataloaders (one is supported)"
            loader = loader[0]
        data: Any = getattr(loader, "dataset", None)
        sampler: Any = getattr(loader, "sampler", None)
        if not (hasattr(data, "inputs") and hasattr(data, "transform") and hasattr(sampler, "batch_indices")):
            return (
                f"its batches are not lit_deep's fixed in-memory ones ({type(data).__name__} with "
                f"{type(sampler).__name__}; FashionMNISTDataModule makes them)"
            )
        if data.transform is not None:
            return f"its batches are augmented ({type(data.transform).__name__}), so an example differs every epoch"
        if getattr(loader, "num_workers", 0):
            return "its dataloader has worker processes"
        return _Split(data, sampler)

    # ----------------------------------------------------------------- the forward pass
    def _forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        assert self._original is not None
        current, self._current = self._current, None  # one call per announced batch
        if current is None or args or kwargs or not isinstance(x, Tensor) or x.dim() < 1:
            return self._original(x, *args, **kwargs)
        split_name, batch_idx = current
        split = self._splits[split_name]
        assert isinstance(split, _Split)
        if split.cut is None and not self._cut(split_name, split, x):
            return self._original(x)
        assert split.cut is not None
        if split.training != bool(self._root is not None and self._root.training):
            return self._original(x)  # cut in the other mode (e.g. a validation run inside a training batch)
        rows = split.sampler.batch_indices(batch_idx)
        if isinstance(rows, slice):
            rows = torch.arange(rows.start, rows.stop)
        if rows.numel() != x.shape[0]:
            return self._original(x)
        if any(p._version != version for p, version in split.watched):
            self.info(f"a frozen parameter changed in place: the {split_name} cache starts again")
            _restart(split)
        features = self._lookup(split_name, split, x, rows)
        if features is None:
            return self._original(x)
        return split.cut.suffix(*features)

    def _lookup(self, name: str, split: _Split, x: Tensor, rows: Tensor) -> list[Tensor] | None:
        """The frontier values of batch ``x`` (the examples ``rows``): stored, or computed for the missing examples.

        A batch none of whose examples is stored runs the prefix on the whole batch, exactly as without the cache.
        A batch with some (a DDP rank meets other examples each epoch: its shard is drawn anew) runs it on those.
        """
        assert split.cut is not None
        filled = split.filled[rows] if split.filled is not None else torch.zeros(len(rows), dtype=torch.bool)
        if not bool(filled.all()):
            some = bool(filled.any())
            missing = rows[~filled] if some else rows
            inputs = x[(~filled).to(x.device)] if some else x
            if not torch.equal(inputs, split.data.inputs[missing].to(device=x.device, dtype=x.dtype)):
                split.declined = (
                    "a batch's inputs differ from the dataset's examples at its indices (changed after load?)"
                )
                split.stores = []
                self.info(f"{name} runs without the cache: {split.declined}")
                return None
            features = self._store(split, split.cut, inputs, missing)
            if not some:
                return features
        assert split.prints is not None
        assert split.weights is not None
        at = rows.to(split.prints.device)
        # A tolerance: the sum's rounding may depend on the batch; another example's input is far off.
        if not torch.allclose(_fingerprint(x, split.weights), split.prints.index_select(0, at), rtol=1e-4, atol=1e-3):
            self.info(f"a {name} batch does not hold the examples its indices name: computed in full")
            return None
        return [store.index_select(0, at) for store in split.stores]

    @staticmethod
    def _store(split: _Split, cut: GraphSplit, x: Tensor, rows: Tensor) -> list[Tensor]:
        """Compute the frontier values of batch ``x`` (the examples ``rows``) and keep them."""
        with torch.no_grad():
            features = list(cut.prefix(x))
        if not split.stores:
            size = len(split.data)
            split.stores = [torch.empty((size, *f.shape[1:]), dtype=f.dtype, device=f.device) for f in features]
            split.filled = torch.zeros(size, dtype=torch.bool)
            split.prints = torch.zeros(size, dtype=torch.float32, device=x.device)
        assert split.prints is not None
        assert split.weights is not None
        at = rows.to(x.device)
        for store, value in zip(split.stores, features, strict=True):
            store[at] = value
        split.prints[at] = _fingerprint(x, split.weights)
        assert split.filled is not None
        split.filled[rows] = True
        return features

    # ----------------------------------------------------------------- the cut
    def _cut(self, name: str, split: _Split, x: Tensor) -> bool:
        """Cut the graph for this split (at its first batch of two or more examples); ``False`` if not cached."""
        assert self._root is not None
        if x.shape[0] < 2:
            return False
        why = self._plan(name, split, x)
        if why is not None:
            split.declined = why
            self.info(f"{name} runs without the cache: {why}")
            return False
        return True

    def _plan(self, name: str, split: _Split, x: Tensor) -> str | None:
        root = self._root
        assert root is not None
        try:
            gm = trace(root, RANDOM_LAYERS)
            sources = random_sources(gm)
            with torch.no_grad():
                cut = split_graph(gm, sources, x[:2])
        except Untraceable as err:
            return str(err)
        if not any(_parameters(cut.prefix, node) for node in cut.prefix.graph.nodes):
            return "no frozen layer comes before the first trainable or random operation"
        with torch.no_grad():
            pair, alone = cut.prefix(x[:2]), cut.prefix(x[:1])
        if not all(torch.allclose(a[:1], b, rtol=1e-4, atol=1e-5) for a, b in zip(pair, alone, strict=True)):
            return "the frozen part mixes the examples of a batch (its output for an example depends on the others)"
        per_example = sum(v[0].numel() * v.element_size() for v in pair) + 4  # + the fingerprint
        nbytes = per_example * len(split.data)
        used = sum(s.nbytes for s in self._splits.values() if isinstance(s, _Split) and s.declined is None)
        if used + nbytes > self.limit_bytes:
            return (
                f"it would take {nbytes / 2**20:.1f} MiB ({len(split.data)} examples x {per_example} bytes), over "
                f"the limit of {self.limit_bytes / 2**20:.1f} MiB{' with the other split' if used else ''}"
            )
        split.cut, split.nbytes, split.training = cut, nbytes, root.training
        generator = torch.Generator().manual_seed(0)
        split.weights = (torch.rand(x[0].numel(), generator=generator) + 0.5).to(x.device)
        params = {id(p): p for node in cut.prefix.graph.nodes for p in _parameters(cut.prefix, node)}
        split.watched = [(p, p._version) for p in params.values()]
        values = sum(v[0].numel() for v in pair)
        self.info(f"{name}: {values} frozen values per example cached ({nbytes / 2**20:.1f} MiB at most)")
        return None


def _restart(split: _Split) -> None:
    """Mark every stored value stale (a frozen parameter changed) and watch the parameters' new versions."""
    if split.filled is not None:
        split.filled.zero_()
    split.watched = [(p, p._version) for p, _ in split.watched]


def _parameters(gm: fx.GraphModule, node: fx.Node) -> list[Tensor]:
    if node.op == "call_module":
        return list(gm.get_submodule(str(node.target)).parameters())
    if node.op == "get_attr":
        value = _attribute(gm, str(node.target))
        return [value] if isinstance(value, Tensor) else []
    return []
