"""Out-of-distribution detection: how well uncertainty scores separate unseen classes from known ones.

The recipe (``benchmarks/ood.py``): train on task A (eight classes, sandal and shirt never seen), then score the
test images of the held-out classes as OOD against task A's test images, comparing the maximum softmax
probability of one deterministic pass (Hendrycks & Gimpel's baseline) with MC-dropout scores.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_deep._device import batch_inputs, model_device, to_model_device
from lit_deep._validate import check_int
from lit_deep.uncertainty._accumulate import to_probs
from lit_deep.uncertainty._layers import dropout_off
from lit_deep.uncertainty.metrics import ood_auroc
from lit_deep.uncertainty.prediction import MCPrediction
from lit_deep.uncertainty.scores import max_softmax_uncertainty, uncertainty_score

__all__ = ["deterministic_probs", "ood_aurocs"]


def deterministic_probs(model: nn.Module, inputs: torch.Tensor | DataLoader, batch_size: int = 1024) -> torch.Tensor:
    """Probabilities ``[N, C]`` of one pass with every dropout off (MC layers included), in eval mode.

    Each batch runs on the model's device; the probabilities (float32 at least, also for a bf16 model or under
    autocast) are returned on the inputs' device, or the model's for a DataLoader. The model's modes are
    restored afterwards.

    Args:
        model: a classifier returning logits (see :func:`~lit_deep.uncertainty.mc_predict`).
        inputs: ``[N, ...]`` or a DataLoader of ``x`` or ``(x, y, ...)`` batches.
        batch_size: images per pass (for a tensor).

    Example::

        >>> from lit_deep.models import MLP
        >>> net = MLP(input_shape=(3,), hidden=(4,), num_classes=2, dropout=0.5, dropout_kind="mc", seed=0)
        >>> x = torch.ones(2, 3)
        >>> torch.equal(deterministic_probs(net, x), deterministic_probs(net, x)), deterministic_probs(net, x).dtype
        (True, torch.float32)
    """
    check_int("batch_size", batch_size, minimum=1)
    if isinstance(inputs, DataLoader):
        batches = [batch_inputs(b) for b in inputs]
        device = model_device(model)
    else:
        batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        device = inputs.device
    with dropout_off(model), torch.no_grad():
        probs = [to_probs(model(to_model_device(model, x))) for x in batches]
    out = torch.cat(probs)
    return out if device is None else out.to(device)


def ood_aurocs(
    det_in: torch.Tensor, det_out: torch.Tensor, mc_in: MCPrediction, mc_out: MCPrediction
) -> dict[str, float]:
    """OOD-detection AUROC (OOD = positive class) of the deterministic baseline and of each MC score.

    Args:
        det_in: ``[N_in, C]`` deterministic probabilities on in-distribution inputs.
        det_out: ``[N_out, C]`` deterministic probabilities on OOD inputs.
        mc_in: MC prediction on the in-distribution inputs.
        mc_out: MC prediction on the OOD inputs.

    Returns:
        ``{"max_softmax (deterministic)", "max_softmax (MC)", "entropy (MC)", "mutual_info (MC)",
        "variation_ratio (MC)"}`` -> AUROC.

    Example::

        >>> sure, unsure = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.6, 0.4]])
        >>> mc_sure = MCPrediction.from_samples(torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]]))
        >>> mc_unsure = MCPrediction.from_samples(torch.tensor([[[0.9, 0.1]], [[0.2, 0.8]]]))
        >>> ood_aurocs(sure, unsure, mc_sure, mc_unsure)["mutual_info (MC)"]
        1.0
    """
    result = {
        "max_softmax (deterministic)": ood_auroc(max_softmax_uncertainty(det_in), max_softmax_uncertainty(det_out))
    }
    for name in ("max_softmax", "entropy", "mutual_info", "variation_ratio"):
        result[f"{name} (MC)"] = ood_auroc(uncertainty_score(mc_in, name), uncertainty_score(mc_out, name))
    return result
