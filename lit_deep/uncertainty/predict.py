"""``mc_predict``: Monte-Carlo dropout prediction with uncertainty, fast and reproducible."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_deep._device import batch_inputs, model_device, to_model_device
from lit_deep._validate import check_choice, check_int, check_seed
from lit_deep.uncertainty._accumulate import SampleStats, to_probs
from lit_deep.uncertainty._every_op import every_op_prediction, every_op_train_mode
from lit_deep.uncertainty._graph import GraphPlan, WholePlan, make_plan
from lit_deep.uncertainty._layers import mc_mode, stochastic_layers
from lit_deep.uncertainty._masks import MaskSampler
from lit_deep.uncertainty.prediction import MCPrediction

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "DEFAULT_MAX_ELEMENTS_ACCELERATOR",
    "DEFAULT_MAX_SAMPLES_BYTES",
    "default_max_elements",
    "MAX_SAMPLES",
    "STOCHASTIC",
    "Stochastic",
    "mc_predict",
]

#: What ``mc_predict`` samples: dropout layers and calls (keyed masks), or every stochastic op of the model.
Stochastic = Literal["dropout", "all"]
STOCHASTIC: tuple[str, ...] = get_args(Stochastic)

#: Default memory bound: elements of the repeated tensor entering the stochastic part (2**22 floats = 16 MiB).
#: Chosen by the sweep of ``benchmarks/mc_dropout.py`` (dropout before every layer of the 300-100 MLP, T=100,
#: 10,000 images, 2 threads, median of 3, masks drawn by the native kernel), in multiples of 100 eval passes:
#: 2**20 1.66, 2**21 1.52, 2**22 1.44, 2**23 1.42, 2**24 2.04; 2**22 is within noise of 2**23 at half the memory.
DEFAULT_MAX_ELEMENTS = 1 << 22
#: The bound on accelerators (2**24 elements, 64 MiB of float32): a GPU is busy only with large kernels, and its
#: memory is not a 2-thread CPU cache. A first choice, not yet measured on a GPU: ``benchmarks/gpu.py`` sweeps it.
DEFAULT_MAX_ELEMENTS_ACCELERATOR = 1 << 24


def default_max_elements(device: torch.device | None) -> int:
    """The default ``max_elements`` of :func:`mc_predict` for a model on ``device``.

    Example::

        >>> default_max_elements(torch.device("cpu")), default_max_elements(torch.device("cuda")) == 1 << 24
        (4194304, True)
    """
    return DEFAULT_MAX_ELEMENTS if device is None or device.type == "cpu" else DEFAULT_MAX_ELEMENTS_ACCELERATOR


#: Upper bound on ``samples``: the MC estimate's error shrinks as ``1/sqrt(T)``, so 10,000 passes already give
#: probabilities to about 0.005; a larger ``T`` (``10**9`` from a typo) only turns one call into hours of work.
MAX_SAMPLES = 10_000

#: Default bound (2 GiB) on the ``[T, N, C]`` float32 probabilities ``return_samples=True`` keeps in memory;
#: raise it with ``max_samples_bytes``.
DEFAULT_MAX_SAMPLES_BYTES = 2 << 30


def _check_kept_size(samples: int, images: int, classes: int, limit: int) -> None:
    """Refuse ``return_samples=True`` when the ``[T, N, C]`` float32 tensor would exceed ``limit`` bytes.

    Example::

        >>> try:
        ...     _check_kept_size(10_000, 60_000, 10, DEFAULT_MAX_SAMPLES_BYTES)
        ... except ValueError as err:
        ...     print(str(err).split(", more")[0])
        return_samples: keeping 10000 samples x 60000 inputs x 10 classes as float32 needs 24.0 GB
    """
    size = samples * images * classes * 4
    if size > limit:
        raise ValueError(
            f"return_samples: keeping {samples} samples x {images} inputs x {classes} classes as float32 needs "
            f"{size / 1e9:.1f} GB, more than max_samples_bytes={limit / 1e9:.1f} GB; use fewer samples or inputs, "
            "or raise max_samples_bytes"
        )


def _check_args(
    samples: int, seed: int | None, batch_size: int, max_elements: int | None, max_samples_bytes: int
) -> None:
    check_int("samples", samples, minimum=1)
    if samples > MAX_SAMPLES:
        raise ValueError(f"samples: at most {MAX_SAMPLES} (MAX_SAMPLES), got {samples}")
    check_int("max_samples_bytes", max_samples_bytes, minimum=1)
    check_seed("seed", seed)
    check_int("batch_size", batch_size, minimum=1)
    if max_elements is not None and max_elements != math.inf:  # inf: no bound (the chunking arithmetic takes it)
        check_int("max_elements", max_elements, minimum=1)


def _check_inputs(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"inputs: expected a tensor or a DataLoader, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"inputs: expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"inputs: expected a non-empty [N, ...] batch, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"inputs: contain {int((~torch.isfinite(x)).sum())} NaN or infinite values")
    return x


def _probe(x: torch.Tensor) -> torch.Tensor:
    """Two inputs (the first one twice if there is only one), to tell per-image values from others."""
    return x[:2] if x.shape[0] >= 2 else x[:1].expand(2, *x.shape[1:])


def _run_tensor(
    model: nn.Module,
    plan: GraphPlan | WholePlan,
    sampler: MaskSampler,
    x: torch.Tensor,
    indices: torch.Tensor,
    samples: int,
    batch_size: int,
    max_elements: int,
    keep_samples: bool,
    kept_images: int = 0,
    max_samples_bytes: int = DEFAULT_MAX_SAMPLES_BYTES,
) -> MCPrediction:
    """The prediction of one batch ``x``, computed on the model's device, chunk by chunk (results stay there)."""
    per_image = plan.per_image
    chunk = min(batch_size, max(1, max_elements // per_image))
    parts: list[MCPrediction] = []
    for lo in range(0, x.shape[0], chunk):
        rows = slice(lo, min(x.shape[0], lo + chunk))
        h = plan.deterministic_prefix(to_model_device(model, x[rows]))
        images = rows.stop - rows.start
        step = max(1, min(samples, max_elements // (images * per_image)))
        sampler.begin_chunk(indices[rows])
        stats: SampleStats | None = None
        pending: list[torch.Tensor] = []
        kept: list[torch.Tensor] = []
        for start in range(0, samples, step):
            count = min(step, samples - start)
            sampler.begin_samples(count, first=start)
            probs = to_probs(plan.stochastic_suffix(h, count)).view(count, images, -1)
            if stats is None:
                if keep_samples and not parts:  # the number of classes is known now, before anything is kept
                    _check_kept_size(samples, kept_images, probs.shape[-1], max_samples_bytes)
                stats = SampleStats(images, probs.shape[-1], probs.dtype, probs.device)
            pending.append(probs)
            kept += [probs] if keep_samples else []
            # Few, large updates: each statistic is one call over all pending samples (small next to activations).
            if start + count == samples or sum(p.numel() for p in pending) * 4 >= max_elements:
                stats.update(torch.cat(pending))
                pending = []
        assert stats is not None
        parts.append(MCPrediction(**{**vars(stats.result()), "samples": torch.cat(kept) if keep_samples else None}))
    return MCPrediction.cat(parts)


def mc_predict(
    model: nn.Module,
    inputs: torch.Tensor | DataLoader,
    samples: int = 100,
    seed: int | None = None,
    batch_size: int = 1024,
    enable_dropout: bool = False,
    return_samples: bool = False,
    indices: torch.Tensor | None = None,
    max_elements: int | None = None,
    max_samples_bytes: int = DEFAULT_MAX_SAMPLES_BYTES,
    stochastic: Stochastic = "dropout",
) -> MCPrediction:
    """Monte-Carlo dropout prediction: ``samples`` stochastic passes, their mean, spread and uncertainty.

    Shapes: inputs ``[N, ...]`` (or a DataLoader of ``x`` or ``(x, y, ...)`` batches); the model returns logits
    ``[N, C]`` (softmax) or ``[N]`` / ``[N, 1]`` (binary, sigmoid, reported as two classes ``[1 - p, p]``).
    See :class:`MCPrediction` for the fields; entropies are in nats.

    **Modes.** Everything runs in eval mode (BatchNorm uses its running statistics), except dropout: the
    always-on :class:`~lit_deep.nn.MCDropout` / :class:`~lit_deep.nn.MCAlphaDropout`, and with
    ``enable_dropout=True`` also ``nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout`` and
    ``FeatureAlphaDropout`` (switched to train mode for the call). Dropout written as a function in ``forward``
    (``F.dropout``, ``F.alpha_dropout``, ``F.dropout1d/2d/3d``, ``F.feature_alpha_dropout``) is found in the
    traced graph: a call with ``training=True`` written in the code is always on, one with
    ``training=self.training`` is switched on by ``enable_dropout=True``; its masks are keyed like the layers'.
    Every module's mode is restored afterwards, also when the call raises.

    **stochastic="all"** samples every stochastic op of any model, not only dropout layers and calls: every
    module in training mode except normalisation layers with running statistics (BatchNorm stays in eval mode,
    its statistics untouched), so functional dropout gated by ``self.training`` (Hugging Face transformers'
    attention-probability dropout), timm's attention dropout and stochastic depth (drop-path) are sampled too.
    Use it for models whose randomness is not a dropout layer; it runs the whole model ``samples`` times (no
    split of the deterministic part) from torch's own generators, seeded per (chunk, sample) inside
    ``fork_rng``: reproducible for the same ``seed``, inputs and ``batch_size``, but, unlike the default
    ``"dropout"`` mode, not invariant to how the inputs are chunked or sharded. A model with nothing stochastic
    in training mode is refused. Outputs with a ``logits`` attribute (``transformers``' ``ModelOutput``) are
    read through it. ``enable_dropout`` is implied.

    **Speed.** The model is traced with ``torch.fx`` (:mod:`lit_deep.uncertainty._graph`): everything that does
    not depend on a dropout runs once per input and only the rest runs, for many samples at once, on its
    output broadcast over the samples. Models that cannot be traced run whole on the input repeated per sample
    (one ``INFO`` line of the ``lit_deep.uncertainty`` logger names why). Work is chunked so that the repeated
    tensor entering the stochastic part holds at most ``max_elements`` elements (at least one image and one
    sample at a time). Masks are hashed on the model's device, a quarter of a 64-bit hash per unit, and written
    straight into the dropout's output; the dropout rate is quantised to ``1/65536``
    (:func:`~lit_deep.nn.dropout.quantize_rate`).

    **Seeding.** Each mask element is a counter-based hash of ``(seed, dropout call, dataset index, sample,
    unit)`` (:mod:`lit_deep.uncertainty._masks`), kept with probability exactly ``1 - quantize_rate(p)``: equal
    seeds give identical masks whatever ``batch_size``, ``max_elements``, DataLoader batching, how the data is
    split across DDP ranks (pass ``indices``), or the device (CPU and CUDA draw the same integers).
    ``seed=None`` draws a seed from PyTorch's global generator (so ``torch.manual_seed`` makes it repeatable).

    **Devices.** Each batch runs on the model's device (its first parameter's); results are returned on the
    inputs' device for a tensor and on the model's device for a DataLoader. Probabilities and every field are
    float32 or wider, also for bf16 / float16 models and under autocast (logits are cast before the softmax).

    Args:
        model: a network with at least one stochastic dropout layer or call (see Modes).
        inputs: a float tensor ``[N, ...]`` or a DataLoader.
        samples: ``T``, the number of stochastic passes (1 to :data:`MAX_SAMPLES`).
        seed: the seed of the masks.
        batch_size: images per chunk (upper bound).
        enable_dropout: also switch on PyTorch's ordinary dropout layers.
        return_samples: keep the per-sample probabilities ``[T, N, C]`` in ``samples``.
        indices: the dataset index of each input (int64 ``[N]``, default ``0..N-1``; DataLoader batches are
            numbered consecutively from 0).
        max_elements: the memory bound described above; ``None``: :func:`default_max_elements` of the model's
            device (2**22 on the CPU, 2**24 on accelerators).
        stochastic: ``"dropout"`` (default: dropout layers and calls, keyed masks) or ``"all"`` (every stochastic
            op, above).
        max_samples_bytes: with ``return_samples``, the most bytes the ``[T, N, C]`` float32 samples may take
            (:data:`DEFAULT_MAX_SAMPLES_BYTES`, 2 GiB); checked before they are kept.

    Returns:
        The :class:`MCPrediction`.

    Raises:
        ValueError: for a model without stochastic dropout layers, ``samples`` outside 1 to :data:`MAX_SAMPLES`,
            kept samples larger than ``max_samples_bytes``, NaN or infinite inputs, inputs the model rejects, or
            inconsistent ``indices``.

    Example::

        >>> from lit_deep.models import MLP
        >>> net = MLP(input_shape=(4,), hidden=(8,), num_classes=3, dropout=0.5, seed=0)
        >>> x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
        >>> pred = mc_predict(net, x, samples=50, seed=1, enable_dropout=True)
        >>> tuple(pred.probs.shape), torch.allclose(pred.probs.sum(1), torch.ones(5))
        ((5, 3), True)
        >>> torch.equal(mc_predict(net, x, samples=50, seed=1, enable_dropout=True).probs, pred.probs)
        True
    """
    _check_args(samples, seed, batch_size, max_elements, max_samples_bytes)
    check_choice("stochastic", stochastic, STOCHASTIC)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    if stochastic == "all":
        return _predict_every_op(model, inputs, samples, seed, batch_size, indices, return_samples, max_samples_bytes)
    if max_elements is None:
        max_elements = default_max_elements(model_device(model))
    layers = stochastic_layers(model, enable_dropout)
    sampler = MaskSampler(seed)
    batches: Iterable[Any]
    if isinstance(inputs, DataLoader):
        if indices is not None:
            raise ValueError("indices: not supported with a DataLoader (its batches are numbered from 0)")
        batches = (batch_inputs(b) for b in inputs)
        try:
            total = len(inputs.dataset)  # type: ignore[arg-type]
        except TypeError:  # an iterable dataset: each batch is checked with what has been kept so far
            total = None
    else:
        total = inputs.shape[0] if isinstance(inputs, torch.Tensor) else None
        batches = [inputs]
    # Results: on the inputs' device for a tensor, on the model's device for a DataLoader.
    device = inputs.device if isinstance(inputs, torch.Tensor) else model_device(model)
    parts, seen = [], 0
    plan: GraphPlan | WholePlan | None = None
    with mc_mode(model, layers, enable_dropout, sampler), torch.no_grad():
        for batch in batches:
            x = _check_inputs(batch)
            idx = _batch_indices(indices, seen, x.shape[0])
            seen += x.shape[0]
            try:
                plan = plan or _plan(model, layers, enable_dropout, sampler, to_model_device(model, _probe(x)))
                kept = total if total is not None else seen
                parts.append(
                    _run_tensor(
                        model,
                        plan,
                        sampler,
                        x,
                        idx,
                        samples,
                        batch_size,
                        max_elements,
                        return_samples,
                        kept,
                        max_samples_bytes,
                    )
                )
            except RuntimeError as err:
                raise ValueError(f"inputs: the model failed on inputs of shape {tuple(x.shape)}: {err}") from err
    if not parts:
        raise ValueError("inputs: the DataLoader yielded no batches")
    return MCPrediction.cat(parts).to(device)


def _predict_every_op(
    model: nn.Module,
    inputs: torch.Tensor | DataLoader,
    samples: int,
    seed: int,
    batch_size: int,
    indices: torch.Tensor | None,
    keep_samples: bool,
    max_samples_bytes: int,
) -> MCPrediction:
    if isinstance(inputs, DataLoader):
        if indices is not None:
            raise ValueError("indices: not supported with a DataLoader (its batches are numbered from 0)")
        batches: Iterable[Any] = (batch_inputs(b) for b in inputs)
    else:
        batches = [inputs]
    device = inputs.device if isinstance(inputs, torch.Tensor) else model_device(model)
    parts, seen = [], 0
    with every_op_train_mode(model), torch.no_grad():
        for batch in batches:
            x = _check_inputs(batch)
            idx = _batch_indices(indices, seen, x.shape[0])
            seen += x.shape[0]
            try:
                part = every_op_prediction(model, x, idx, samples, seed, batch_size, keep_samples)
            except RuntimeError as err:
                raise ValueError(f"inputs: the model failed on inputs of shape {tuple(x.shape)}: {err}") from err
            if keep_samples and part.samples is not None:
                _check_kept_size(samples, seen, part.probs.shape[-1], max_samples_bytes)
            parts.append(part)
    if not parts:
        raise ValueError("inputs: the DataLoader yielded no batches")
    return MCPrediction.cat(parts).to(device)


def _plan(
    model: nn.Module, layers: list[nn.Module], enable_dropout: bool, sampler: MaskSampler, x: torch.Tensor
) -> GraphPlan | WholePlan:
    plan = make_plan(model, layers, enable_dropout, sampler, x)
    if not plan.stochastic:
        hint = "" if enable_dropout else " (pass enable_dropout=True to switch on nn.Dropout layers and F.dropout)"
        why = f"; {plan.reason}" if isinstance(plan, WholePlan) and plan.reason else ""
        raise ValueError(f"model: {type(model).__name__} has no stochastic dropout layer or call with p > 0{hint}{why}")
    return plan


def _batch_indices(indices: torch.Tensor | None, start: int, count: int) -> torch.Tensor:
    if indices is None:
        return torch.arange(start, start + count)
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if idx.numel() != count:
        raise ValueError(f"indices: {idx.numel()} indices for {count} inputs")
    if bool((idx < 0).any()):
        raise ValueError(f"indices: must be non-negative, got minimum {int(idx.min())}")
    return idx
