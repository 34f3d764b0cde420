"""The fast path for any traceable model: run what does not depend on dropout once, the rest once per sample.

The model is traced with ``torch.fx`` (dropout modules are leaves). Stochastic nodes are the chosen dropout
modules and the functional dropout calls (``F.dropout``, ``F.alpha_dropout``, ``F.dropout1d/2d/3d``,
``F.feature_alpha_dropout`` and their ``torch.*`` ops) that are stochastic in MC mode; a functional call
becomes a keyed dropout module of the traced graph. Every node that depends on a stochastic node is
*tainted*. The graph is split in two ``GraphModule`` s (by :mod:`lit_deep.nn.graph`, which the frozen-feature cache
of ``FreezeUnfreeze`` shares):

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

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from lit_deep.nn.graph import Untraceable, split_graph, trace
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
        gm = trace(model, _DROPOUT)
        stochastic = _mark_stochastic(gm, layers, enable_dropout, sampler)
        _check_all_called(model, gm, layers)
        cut = split_graph(gm, stochastic, probe)
        broadcast = [all(u in stochastic for u in n.users) for n in cut.frontier]
        return GraphPlan(cut.prefix, cut.suffix, broadcast, len(stochastic), cut.per_example)
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
