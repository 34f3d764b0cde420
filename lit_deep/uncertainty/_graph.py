"""The fast path for any traceable model: run what does not depend on dropout once, the rest once per sample.

The model is traced with ``torch.fx`` (dropout modules are leaves). Stochastic nodes are the chosen dropout
modules and the functional dropout calls (``F.dropout``, ``F.alpha_dropout``, ``F.dropout1d/2d/3d``,
``F.feature_alpha_dropout`` and their ``torch.*`` ops) that are stochastic in MC mode; a functional call
becomes a keyed dropout module of the traced graph. Every node that depends on a stochastic node is
*tainted*. The graph is split in two ``GraphModule`` s:

* the **prefix** computes, once per image, every untainted value that a tainted node reads (the *frontier*);
* the **suffix** takes the frontier and computes the tainted nodes for ``T`` samples at once: a frontier value
  read only by dropout is passed with one row per image (the dropout broadcasts it over the samples), any other
  is repeated ``T`` times.

A frontier value that is not a per-image tensor (e.g. ``x.size(0)`` read after a dropout) is recomputed in the
suffix instead, which a probe run of the prefix on two images detects. Models that cannot be traced run whole
on the input repeated per sample (:class:`WholePlan`), and the reason is logged once. So do models whose
stochastic dropout modules are not all nodes of the graph (inside a module the tracer keeps whole, or never
called): the whole-model path counts the dropout modules whose forward actually runs and refuses, naming them,
those that exist but never run, so that a stochastic model is sampled or refused, never returned as
deterministic.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from lit_deep.uncertainty._layers import ALWAYS_ON, SWITCHABLE, keyed_dropout
from lit_deep.uncertainty._masks import MaskSampler

__all__ = ["FunctionalDropout", "GraphPlan", "WholePlan", "make_plan", "never_ran_message"]

_LOG = logging.getLogger("lit_deep.uncertainty")
_LOGGED: set[tuple[str, str]] = set()

# Functional dropout: target -> (feature, alpha, names of (p, training), defaults of (p, training)).
_F_ARGS = (("p", "training"), (0.5, True))
_T_ARGS = (("p", "train"), (None, None))
_FUNCTIONAL: dict[Any, tuple[bool, bool, tuple[tuple[str, str], tuple[Any, Any]]]] = {
    F.dropout: (False, False, _F_ARGS),
    F.alpha_dropout: (False, True, _F_ARGS),
    F.dropout1d: (True, False, _F_ARGS),
    F.dropout2d: (True, False, _F_ARGS),
    F.dropout3d: (True, False, _F_ARGS),
    F.feature_alpha_dropout: (True, True, _F_ARGS),
    torch.dropout: (False, False, _T_ARGS),
    torch.alpha_dropout: (False, True, _T_ARGS),
    torch.feature_dropout: (True, False, _T_ARGS),
    torch.feature_alpha_dropout: (True, True, _T_ARGS),
}


class Untraceable(Exception):
    """Why a model takes the whole-model path."""


class FunctionalDropout(nn.Module):
    """A functional dropout call of a traced model, drawing the keyed masks of ``sampler``.

    Args:
        p: the call's dropout rate.
        feature: channel dropout (``dropout1d/2d/3d``).
        alpha: alpha dropout.
        sampler: the mask sampler of the ``mc_predict`` call.
        name: the function's name, for error messages.

    Example::

        >>> sampler = MaskSampler(0)
        >>> sampler.begin_chunk(torch.arange(1))
        >>> sampler.begin_samples(2)
        >>> FunctionalDropout(0.5, False, False, sampler)(torch.ones(1, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, p: float, feature: bool, alpha: bool, sampler: MaskSampler, name: str = "dropout") -> None:
        super().__init__()
        self.p, self.feature, self.alpha, self.sampler, self.name = p, feature, alpha, sampler, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keyed dropout of ``x`` (``[images or samples * images, ...]`` -> ``[samples * images, ...]``)."""
        return keyed_dropout(x, self.sampler, self.p, self.feature, self.alpha, f"F.{self.name}")


def _expand(h: torch.Tensor, samples: int) -> torch.Tensor:
    return h.unsqueeze(0).expand(samples, *h.shape).reshape(samples * h.shape[0], *h.shape[1:])


def _describe_layers(model: nn.Module, layers: Sequence[nn.Module]) -> str:
    """``"blocks.0.attn.attn_drop (Dropout, p=0.1), ..."``: the layers by their names in ``model``."""
    names = {id(m): name for name, m in model.named_modules()}
    shown = [f"{names.get(id(m), '?')} ({type(m).__name__}, p={float(getattr(m, 'p', 0.0)):g})" for m in layers[:5]]
    more = f" and {len(layers) - 5} more" if len(layers) > 5 else ""
    return ", ".join(shown) + more


def never_ran_message(model: nn.Module, idle: Sequence[nn.Module]) -> str:
    """The one-line refusal for stochastic dropout modules that exist in ``model`` but never ran in its forward.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> net.drop = nn.Dropout(0.1)
        >>> never_ran_message(net, [net.drop]).split(":")[1]
        ' Sequential has dropout modules that never ran in its forward pass'
    """
    return (
        f"model: {type(model).__name__} has dropout modules that never ran in its forward pass: "
        f"{_describe_layers(model, idle)}; a module kept only for its rate (e.g. passed as dropout_p to "
        "F.scaled_dot_product_attention) cannot be sampled, and the spread would be silently 0. Set their p to 0 "
        "to predict without them (an 'every stochastic op' mode that samples such calls is not built yet)"
    )


class WholePlan:
    """The whole model on the input repeated once per sample (models that cannot be traced).

    ``layers`` are the stochastic dropout modules: the first pass counts those whose forward runs (forward
    hooks) and refuses, naming them, modules that exist but never run; ``stochastic`` is then the number that ran.

    Example::

        >>> plan = WholePlan(nn.Linear(3, 2), 0)
        >>> plan.stochastic_suffix(plan.deterministic_prefix(torch.ones(4, 3)), 5).shape
        torch.Size([20, 2])
    """

    fast = False

    def __init__(
        self,
        model: nn.Module,
        stochastic: int,
        reason: str = "",
        per_image: int = 0,
        layers: Sequence[nn.Module] = (),
    ) -> None:
        self.model, self.stochastic, self.reason, self.per_image = model, stochastic, reason, per_image
        self._unchecked = list(layers)

    def deterministic_prefix(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The part run once per image: here none, the input itself."""
        return [x]

    def stochastic_suffix(self, h: list[torch.Tensor], samples: int) -> torch.Tensor:
        """The model on the input repeated ``samples`` times (sample-major rows); the first pass is checked."""
        if not self._unchecked:
            return self.model(_expand(h[0], samples))
        ran: set[int] = set()
        handles = [m.register_forward_hook(lambda m, args, out: ran.add(id(m))) for m in self._unchecked]
        try:
            out = self.model(_expand(h[0], samples))
        finally:
            for handle in handles:
                handle.remove()
        idle = [m for m in self._unchecked if id(m) not in ran]
        if idle:
            raise ValueError(never_ran_message(self.model, idle))
        self.stochastic, self._unchecked = len(ran), []
        return out


class GraphPlan:
    """The traced model split into a ``prefix`` run once per image and a ``suffix`` run for ``T`` samples at once.

    Attributes:
        prefix: inputs ``[S, ...]`` -> the frontier values (a tuple of ``[S, ...]`` tensors).
        suffix: the frontier values -> the model's output ``[T * S, ...]``.
        broadcast: per frontier value, whether it is passed with ``S`` rows (read only by dropout).
        stochastic: the number of stochastic nodes (dropout modules and functional calls).
        per_image: elements of the frontier values per image (what the memory bound counts).

    Example::

        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Linear(3, 2)).eval()
        >>> plan = make_plan(net, [net[2]], True, MaskSampler(0), torch.ones(2, 4))
        >>> [n.target for n in plan.prefix.graph.nodes if n.op == "call_module"], plan.broadcast
        (['0', '1'], [True])
    """

    fast = True

    def __init__(
        self, prefix: fx.GraphModule, suffix: fx.GraphModule, broadcast: list[bool], stochastic: int, per_image: int
    ) -> None:
        self.prefix, self.suffix, self.broadcast = prefix, suffix, broadcast
        self.stochastic, self.per_image = stochastic, per_image

    def deterministic_prefix(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The graph up to the first stochastic node, run once per image: the frontier values for ``x`` ``[S, ...]``."""
        return list(self.prefix(x))

    def stochastic_suffix(self, h: list[torch.Tensor], samples: int) -> torch.Tensor:
        """The rest of the graph, from the frontier values: ``samples`` outputs per image (sample-major rows)."""
        return self.suffix(*(v if b else _expand(v, samples) for v, b in zip(h, self.broadcast, strict=True)))


_DROPOUT = ALWAYS_ON + SWITCHABLE


class _Tracer(fx.Tracer):
    """Dropout modules are leaves; with ``opaque`` so is every module without a dropout module inside."""

    def __init__(self, opaque: bool = False) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _DROPOUT) or super().is_leaf_module(m, module_qualified_name):
            return True
        return self.opaque and module_qualified_name != "" and not any(isinstance(s, _DROPOUT) for s in m.modules())


def _trace(model: nn.Module) -> fx.GraphModule:
    """Trace through every module; if that fails, keep the modules without dropout modules opaque.

    The second attempt serves models with input checks or other control flow in deterministic parts (e.g. a
    preprocessing layer); functional dropout inside an opaque module then stays as the module's mode says.
    """
    try:
        return _trace_with(model, _Tracer())
    except Untraceable as first:
        try:
            return _trace_with(model, _Tracer(opaque=True))
        except Untraceable:
            raise first from None


def _trace_with(model: nn.Module, tracer: _Tracer) -> fx.GraphModule:
    params = list(inspect.signature(model.forward).parameters.values())
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not plain or any(p.default is p.empty for p in plain[1:]):
        raise Untraceable("forward must take one input (further arguments need defaults)")
    concrete = {p.name: p.default for p in plain[1:]}
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as err:  # tracing runs user code: any failure means "not traceable"
        raise Untraceable(f"torch.fx could not trace it ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return fx.GraphModule(model, graph, type(model).__name__)


def _functional_args(node: fx.Node, spec: tuple[tuple[str, str], tuple[Any, Any]]) -> tuple[float, bool]:
    names, defaults = spec
    values: list[Any] = []
    for i, (name, default) in enumerate(zip(names, defaults, strict=True)):
        value = node.args[i + 1] if len(node.args) > i + 1 else node.kwargs.get(name, default)
        if isinstance(value, fx.Node) or value is None:
            raise Untraceable(f"the {name} of a {node.target.__name__} call is computed at run time")  # type: ignore[union-attr]
        values.append(value)
    return float(values[0]), bool(values[1])


def _mark_stochastic(
    gm: fx.GraphModule, layers: list[nn.Module], enable_dropout: bool, sampler: MaskSampler
) -> list[fx.Node]:
    """The stochastic nodes; functional calls that are stochastic become :class:`FunctionalDropout` modules."""
    chosen = {id(m) for m in layers}
    found = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and id(gm.get_submodule(node.target)) in chosen:
            found.append(node)
        elif node.op == "call_function" and node.target in _FUNCTIONAL:
            feature, alpha, spec = _FUNCTIONAL[node.target]
            p, training = _functional_args(node, spec)
            # training=True written in the code is always on (like MCDropout); training=self.training is False
            # in eval mode and switched on by enable_dropout, like nn.Dropout.
            if p <= 0 or not (training or enable_dropout):
                continue
            name = f"_mc_functional_{len(found)}"
            gm.add_submodule(name, FunctionalDropout(p, feature, alpha, sampler, node.target.__name__))
            node.op, node.target, node.args, node.kwargs = "call_module", name, (node.args[0],), {}
            found.append(node)
    return found


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


def _split(gm: fx.GraphModule, stochastic: list[fx.Node], forced: set[fx.Node]) -> tuple[Any, ...]:
    nodes = list(gm.graph.nodes)
    output = nodes[-1]
    source = next(n for n in nodes if n.op == "placeholder")
    tainted: set[fx.Node] = set()
    batch: set[fx.Node] = set()
    for node in nodes:
        inputs = node.all_input_nodes
        if node in stochastic or node in forced or any(n in tainted for n in inputs):
            tainted.add(node)
        if node is source or any(n in batch for n in inputs):
            batch.add(node)
    readers = [n for n in nodes if n in tainted] + [output]
    frontier = [n for n in nodes if n in batch and n not in tainted and any(n in r.all_input_nodes for r in readers)]
    fset = set(frontier)
    broadcast = [all(u in stochastic for u in n.users) for n in frontier]
    prefix = _copy(gm, _closure(frontier, set()), None, tuple(frontier))
    keep = _closure([*output.all_input_nodes, *stochastic], fset)
    suffix = _copy(gm, keep, frontier, output.args[0])
    return prefix, suffix, broadcast, frontier


def make_plan(
    model: nn.Module, layers: list[nn.Module], enable_dropout: bool, sampler: MaskSampler, probe: torch.Tensor
) -> GraphPlan | WholePlan:
    """The fast plan of ``model`` (in MC mode), or the whole-model plan with the reason it is not traceable.

    ``layers`` are the stochastic dropout modules; ``probe`` two (or more) inputs ``[S, ...]`` that check that
    every frontier value is a per-image tensor.

    Example::

        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body, self.out = nn.Linear(4, 8), nn.Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.out(F.dropout(self.body(x), 0.3, self.training))
        >>> plan = make_plan(Net().eval(), [], True, MaskSampler(0), torch.ones(2, 4))
        >>> plan.fast, plan.stochastic
        (True, 1)
    """
    try:
        gm = _trace(model)
        stochastic = _mark_stochastic(gm, layers, enable_dropout, sampler)
        _check_all_called(model, gm, layers)
        forced: set[fx.Node] = set()
        while True:
            prefix, suffix, broadcast, frontier = _split(gm, stochastic, forced)
            outs = prefix(probe)
            bad = {f for f, v in zip(frontier, outs, strict=True) if not _per_image(v, probe.shape[0])}
            if not bad:
                per_image = sum(v[0].numel() for v in outs)
                return GraphPlan(prefix, suffix, broadcast, len(stochastic), per_image)
            if any(f.op == "placeholder" for f in bad):
                raise Untraceable("its input is read in a way that is not per image")
            forced |= bad
    except Untraceable as why:
        reason = str(why)
    key = (type(model).__qualname__, reason)
    if key not in _LOGGED:
        _LOGGED.add(key)
        _LOG.info("mc_predict: %s runs whole for every sample: %s", type(model).__name__, reason)
    return WholePlan(model, len(layers), reason, probe[0].numel(), layers)


def _check_all_called(model: nn.Module, gm: fx.GraphModule, layers: list[nn.Module]) -> None:
    """Take the whole-model path when a stochastic dropout module is not a node of the traced graph.

    Such a module runs inside a module the tracer kept whole (a ``torch.nn`` layer such as
    ``nn.TransformerEncoderLayer``) or never runs (kept only for its rate): the whole-model path samples the
    first and refuses the second, where the graph would silently leave both out.
    """
    called = {id(gm.get_submodule(n.target)) for n in gm.graph.nodes if n.op == "call_module"}
    missing = [m for m in layers if id(m) not in called]
    if missing:
        raise Untraceable(f"dropout modules not called in the traced graph: {_describe_layers(model, missing)}")


def _per_image(value: object, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows
