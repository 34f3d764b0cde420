"""Split a traced model at a frontier: the part that does not depend on chosen *source* nodes, and the rest.

Shared by ``mc_predict`` (sources: the stochastic dropout nodes; the prefix runs once per image, the suffix once
per sample) and ``FreezeUnfreeze(cache_features=True)`` (sources: trainable or random nodes; the prefix's output
is cached per example, the suffix trains on it).

The model is traced with ``torch.fx`` (the given ``leaves`` stay single nodes). Every node that depends on a source
is *tainted*. :func:`split_graph` cuts the graph in two ``GraphModule`` s:

* the **prefix** computes, from the model's input, every untainted per-batch value that a tainted node (or the
  output) reads: the *frontier*;
* the **suffix** takes the frontier values and computes the rest, the model's output.

A frontier value that is not a per-example tensor (e.g. ``x.size(0)``) is recomputed in the suffix instead, which
a probe run of the prefix on two examples detects. Both parts hold the model's own submodules (shared, not copied).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn

__all__ = ["GraphSplit", "Untraceable", "split_graph", "trace"]


class Untraceable(Exception):
    """Why a model cannot be split (it cannot be traced, or its input is read in a way that is not per example)."""


class _Tracer(fx.Tracer):
    """``leaves`` are single nodes; with ``opaque`` so is every module without a leaf-type module inside."""

    def __init__(self, leaves: tuple[type[nn.Module], ...], opaque: bool = False) -> None:
        super().__init__()
        self.leaves, self.opaque = leaves, opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name):
            return True
        return self.opaque and module_qualified_name != "" and not any(isinstance(s, self.leaves) for s in m.modules())


def trace(model: nn.Module, leaves: tuple[type[nn.Module], ...] = ()) -> fx.GraphModule:
    """The ``torch.fx`` graph of ``model``'s class ``forward``, ``leaves`` kept as single nodes.

    Traces through every module; if that fails, keeps the modules without a ``leaves`` module inside opaque (this
    serves models with input checks or other control flow in such parts, e.g. a preprocessing layer). The model's
    current modes are baked in where its code reads ``self.training``.

    Raises:
        Untraceable: the reason, when neither attempt works.

    Example::

        >>> gm = trace(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)), (nn.Dropout,))
        >>> [n.op for n in gm.graph.nodes]
        ['placeholder', 'call_module', 'call_module', 'output']
    """
    try:
        return _trace_with(model, _Tracer(leaves))
    except Untraceable as first:
        try:
            return _trace_with(model, _Tracer(leaves, opaque=True))
        except Untraceable:
            raise first from None


def _trace_with(model: nn.Module, tracer: _Tracer) -> fx.GraphModule:
    params = list(inspect.signature(type(model).forward).parameters.values())[1:]  # without self
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not plain or any(p.default is p.empty for p in plain[1:]):
        raise Untraceable("forward must take one input (further arguments need defaults)")
    concrete = {p.name: p.default for p in plain[1:]}
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as err:  # tracing runs user code: any failure means "not traceable"
        raise Untraceable(f"torch.fx could not trace it ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return fx.GraphModule(model, graph, type(model).__name__)


def _closure(roots: Iterable[fx.Node], stop: set[fx.Node]) -> set[fx.Node]:
    """``roots`` and every node they read, not walking past ``stop``."""
    seen: set[fx.Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            if node not in stop:
                stack.extend(node.all_input_nodes)
    return seen


def _copy(gm: fx.GraphModule, keep: set[fx.Node], inputs: list[fx.Node] | None, outputs: Any) -> fx.GraphModule:
    """A GraphModule of the ``keep`` nodes; ``inputs`` become its placeholders (``None``: the model's own)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for i, node in enumerate(inputs or []):
        env[node] = graph.placeholder(f"h{i}")
    for node in gm.graph.nodes:
        if node not in env and node.op != "output" and (node in keep or (inputs is None and node.op == "placeholder")):
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(fx.node.map_arg(outputs, lambda n: env[n]))
    return fx.GraphModule(gm, graph)


def _cut(gm: fx.GraphModule, sources: Sequence[fx.Node], forced: set[fx.Node]) -> GraphSplit:
    nodes = list(gm.graph.nodes)
    output = nodes[-1]
    source = next(n for n in nodes if n.op == "placeholder")
    taint_from = set(sources) | forced
    tainted: set[fx.Node] = set()
    batch: set[fx.Node] = set()
    for node in nodes:
        inputs = node.all_input_nodes
        if node in taint_from or any(n in tainted for n in inputs):
            tainted.add(node)
        if node is source or any(n in batch for n in inputs):
            batch.add(node)
    readers = [n for n in nodes if n in tainted] + [output]
    frontier = [n for n in nodes if n in batch and n not in tainted and any(n in r.all_input_nodes for r in readers)]
    prefix = _copy(gm, _closure(frontier, set()), None, tuple(frontier))
    keep = _closure([*output.all_input_nodes, *sources], set(frontier))
    suffix = _copy(gm, keep, frontier, output.args[0])
    return GraphSplit(prefix, suffix, frontier)


class GraphSplit:
    """A traced model cut at its frontier: ``suffix(*prefix(x))`` computes what the model computes.

    Attributes:
        prefix: input ``[S, ...]`` -> the frontier values (a tuple of ``[S, ...]`` tensors).
        suffix: the frontier values -> the model's output.
        frontier: the frontier's nodes in the traced graph.
        per_example: elements of the frontier values per example (0 until :func:`split_graph` probed them).

    Example::

        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> gm = trace(net)
        >>> cut = split_graph(gm, [n for n in gm.graph.nodes if n.target == "2"], torch.ones(2, 4))
        >>> cut.per_example, torch.equal(cut.suffix(*cut.prefix(torch.ones(1, 4))), net(torch.ones(1, 4)))
        (3, True)
    """

    def __init__(self, prefix: fx.GraphModule, suffix: fx.GraphModule, frontier: list[fx.Node]) -> None:
        self.prefix, self.suffix, self.frontier = prefix, suffix, frontier
        self.per_example = 0


def split_graph(gm: fx.GraphModule, sources: Sequence[fx.Node], probe: torch.Tensor) -> GraphSplit:
    """Cut ``gm`` where its nodes start to depend on ``sources``; every frontier value is a per-example tensor.

    ``probe`` (two or more inputs ``[S, ...]``) runs the prefix to find frontier values that are not ``[S, ...]``
    tensors; those move to the suffix (recomputed there), and the cut is made again.

    Raises:
        Untraceable: the model's input itself is read in a way that is not per example.

    Example::

        >>> gm = trace(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
        >>> split_graph(gm, [n for n in gm.graph.nodes if n.target == "1"], torch.ones(2, 2, 2)).per_example
        4
    """
    forced: set[fx.Node] = set()
    while True:
        cut = _cut(gm, sources, forced)
        outs = cut.prefix(probe)
        bad = {f for f, v in zip(cut.frontier, outs, strict=True) if not _per_example(v, probe.shape[0])}
        if not bad:
            cut.per_example = sum(v[0].numel() for v in outs)
            return cut
        if any(f.op == "placeholder" for f in bad):
            raise Untraceable("its input is read in a way that is not per example")
        forced |= bad


def _per_example(value: object, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows
