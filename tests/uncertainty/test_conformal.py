"""Split conformal prediction sets: known quantiles on small cases, the coverage guarantee on the zoo's MLP."""

from __future__ import annotations

import math

import pytest
import torch

from lit_deep.uncertainty import MCPrediction, conformal_calibrate, prediction_sets, set_coverage
from lit_deep.uncertainty.conformal import (
    ConformalCalibration,
    calibrate_scores,
    conformity_scores,
    mean_set_size,
)


def _data(n: int = 400, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and labels drawn from them (a calibrated model): conformal sets are about right."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, c, generator=g), dim=1)
    return probs, torch.multinomial(probs, 1, generator=g).squeeze(1)


# ----------------------------------------------------------------- the quantile


@pytest.mark.parametrize(("n", "alpha", "k"), [(9, 0.1, 9), (10, 0.1, 10), (99, 0.1, 90), (100, 0.05, 96), (4, 0.2, 4)])
def test_quantile_is_the_ceil_n_plus_1_rank(n: int, alpha: float, k: int) -> None:
    scores = torch.randperm(n).double() / n  # distinct scores 0, 1/n, ..., (n-1)/n
    assert k == math.ceil((n + 1) * (1 - alpha) - 1e-9)
    assert calibrate_scores(scores, alpha).quantile == (k - 1) / n


def test_too_few_calibration_examples_give_every_class() -> None:
    calibrated = calibrate_scores(torch.tensor([0.2, 0.5, 0.9]), alpha=0.1)  # k = ceil(4 * 0.9) = 4 > 3
    assert calibrated.quantile == math.inf
    sets = prediction_sets(torch.tensor([[0.98, 0.01, 0.01]]), calibrated)
    assert sets.all()


def test_lac_known_case() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.5, 0.5]])
    targets = torch.tensor([0, 1, 1, 0, 0])  # scores 0.1, 0.6, 0.3, 0.8, 0.5
    calibrated = conformal_calibrate(probs, targets, alpha=0.4)  # k = ceil(6 * 0.6) = 4: 0.6
    assert (calibrated.method, calibrated.n, calibrated.randomized) == ("lac", 5, False)
    assert calibrated.quantile == pytest.approx(0.6)
    sets = prediction_sets(torch.tensor([[0.7, 0.3], [0.45, 0.55], [0.35, 0.65]]), calibrated)
    assert sets.tolist() == [[True, False], [True, True], [False, True]]


def test_aps_and_raps_scores_by_hand() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    targets = torch.tensor([0, 2])  # ranks 3 and 3 (ties keep the class order: class 1 before class 2)
    aps = conformity_scores(probs, targets, "aps", randomized=False)
    assert aps.tolist() == pytest.approx([1.0, 1.0])
    raps = conformity_scores(probs, targets, "raps", lam=0.5, k_reg=1, randomized=False)
    assert raps.tolist() == pytest.approx([2.0, 2.0])  # + 0.5 * (3 - 1)
    u = torch.rand(2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    randomized = conformity_scores(probs, targets, "aps", seed=7)
    assert randomized.tolist() == pytest.approx([0.9 + u[0].item() * 0.1, 0.75 + u[1].item() * 0.25])
    assert randomized.dtype == torch.float64


def test_raps_with_no_penalty_is_aps() -> None:
    probs, targets = _data()
    aps = conformity_scores(probs, targets, "aps", seed=3)
    assert torch.equal(conformity_scores(probs, targets, "raps", lam=0.0, k_reg=2, seed=3), aps)


@pytest.mark.parametrize("method", ["aps", "raps"])
@pytest.mark.parametrize("randomized", [True, False])
def test_sets_are_top_k_and_hold_the_true_class_iff_its_score_is_below_q(method: str, randomized: bool) -> None:
    probs, targets = _data(seed=1)
    calibrated = conformal_calibrate(probs[:200], targets[:200], 0.1, method, randomized=randomized, seed=0)
    sets = prediction_sets(probs[200:], calibrated, seed=5)
    order = probs[200:].argsort(dim=1, descending=True, stable=True)
    ranked = sets.gather(1, order)
    assert torch.equal(ranked, ranked.cummin(dim=1).values)  # a prefix of the ranking
    scores = conformity_scores(probs[200:], targets[200:], method, randomized=randomized, seed=5)
    covered = sets.gather(1, targets[200:, None]).squeeze(1)
    if randomized:  # the same u draws at the same seed: y in C(x) exactly when s(x, y, u) <= q
        assert torch.equal(covered, scores <= calibrated.quantile)
    else:  # the next class after the last score <= q is added: never empty, never misses a score <= q
        assert bool(covered[scores <= calibrated.quantile].all())
        assert bool(sets.any(dim=1).all())


def test_accepts_an_mc_prediction_and_float64() -> None:
    probs, targets = _data()
    mc = MCPrediction.from_samples(probs[None].expand(3, -1, -1))
    assert conformal_calibrate(mc, targets) == conformal_calibrate(probs.double(), targets)
    assert torch.equal(
        prediction_sets(mc, conformal_calibrate(mc, targets)),
        prediction_sets(probs, conformal_calibrate(probs, targets)),
    )


def test_calibration_is_frozen_and_round_trips() -> None:
    calibrated = conformal_calibrate(*_data(), method="raps", lam=0.2, k_reg=2, seed=0)
    with pytest.raises(AttributeError):
        calibrated.quantile = 0.5  # type: ignore[misc]
    assert ConformalCalibration(**calibrated.to_dict()) == calibrated  # type: ignore[arg-type]
    assert (calibrated.lam, calibrated.k_reg) == (0.2, 2)
    assert conformal_calibrate(*_data(), method="aps", lam=0.2, k_reg=2).lam == 0.0  # APS records no penalty


def test_coverage_and_size_helpers() -> None:
    sets = torch.tensor([[True, False, False], [True, True, False], [False, False, False], [True, True, True]])
    assert set_coverage(sets, torch.tensor([0, 1, 2, 2])) == 0.75
    assert mean_set_size(sets) == 1.5


@pytest.mark.parametrize("method", ["lac", "aps", "raps"])
def test_synthetic_coverage_over_many_splits(method: str) -> None:
    """A calibrated synthetic model, 200 random 500/500 splits: the mean coverage is within 3 SE of the band."""
    probs, targets = _data(n=1000, seed=2)
    g = torch.Generator().manual_seed(0)
    coverages = []
    for split in range(200):
        perm = torch.randperm(1000, generator=g)
        cal, test = perm[:500], perm[500:]
        calibrated = conformal_calibrate(probs[cal], targets[cal], 0.1, method, seed=split)
        coverages.append(set_coverage(prediction_sets(probs[test], calibrated, seed=1000 + split), targets[test]))
    mean, se = sum(coverages) / 200, math.sqrt(0.09 * (1 / 502 + 1 / 500) / 200)
    assert 0.9 - 3 * se <= mean <= 0.9 + 1 / 501 + 3 * se, mean


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_sets_on_the_device_of_the_probabilities(device: str) -> None:
    probs, targets = (t.to(device) for t in _data())
    for method in ("lac", "aps", "raps"):
        calibrated = conformal_calibrate(probs, targets, method=method, seed=0)
        sets = prediction_sets(probs, calibrated, seed=0)
        assert sets.device.type == device and sets.dtype == torch.bool
        cpu = prediction_sets(
            probs.cpu(), conformal_calibrate(probs.cpu(), targets.cpu(), method=method, seed=0), seed=0
        )
        assert torch.equal(sets.cpu(), cpu)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, y: conformal_calibrate(p, y, alpha=0.0), "alpha: must be a number in (0, 1), got 0.0"),
        (lambda p, y: conformal_calibrate(p, y, alpha=1), "alpha: must be a number in (0, 1), got 1"),
        (lambda p, y: conformal_calibrate(p, y, method="thr"), "method: must be one of ('lac', 'aps', 'raps')"),
        (lambda p, y: conformal_calibrate(p, y, method="raps", lam=-1), "lam: must be a finite number >= 0"),
        (lambda p, y: conformal_calibrate(p, y, method="raps", k_reg=1.5), "k_reg: must be an integer >= 0"),
        (lambda p, y: conformal_calibrate(p, y, randomized=1), "randomized: must be True or False"),
        (lambda p, y: conformal_calibrate(p, y, seed=-1), "seed: must be None or an integer >= 0"),
        (lambda p, y: conformal_calibrate(p[:, :1], y), "probs: expected [N, C] probabilities with C >= 2"),
        (lambda p, y: conformal_calibrate(p, y[:3]), "targets: expected shape (400,)"),
        (lambda p, y: conformal_calibrate(p, y + 5), "targets: class indices must be in [0, 5)"),
        (lambda p, y: conformal_calibrate(p * float("nan"), y), "probs: contains NaN"),
        (lambda p, y: prediction_sets(p, 0.9), "calibrated: expected a ConformalCalibration, got float"),  # type: ignore[arg-type]
        (lambda p, y: set_coverage(p, y), "sets: expected a bool [N, C] tensor"),
        (lambda p, y: set_coverage(p > 0.5, y[:2]), "targets: expected shape (400,)"),
        (lambda p, y: calibrate_scores(torch.tensor([]), 0.1), "scores: expected a non-empty 1-D tensor"),
    ],
)
def test_bad_inputs_name_the_argument(call, message: str) -> None:  # type: ignore[no-untyped-def]
    probs, targets = _data()
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message)):
        call(probs, targets)


# ----------------------------------------------------------------- the zoo's MLP on the real test split


@pytest.fixture(scope="module")
def mlp_probs() -> tuple[torch.Tensor, torch.Tensor]:
    from lit_deep import zoo
    from lit_deep.uncertainty import deterministic_probs
    from lit_deep.zoo.release.evaluate import load_test_split

    images, labels = load_test_split("full")
    return deterministic_probs(zoo.load("mlp.fmnist"), images), labels


def _splits(probs: torch.Tensor, labels: torch.Tensor, method: str, alpha: float = 0.1, splits: int = 20):
    """Coverage and mean set size of ``splits`` random halves (calibration / test) of the test split."""
    g = torch.Generator().manual_seed(0)
    coverages, sizes = [], []
    for split in range(splits):
        perm = torch.randperm(labels.numel(), generator=g)
        cal, test = perm[: labels.numel() // 2], perm[labels.numel() // 2 :]
        calibrated = conformal_calibrate(probs[cal], labels[cal], alpha, method, seed=split)  # type: ignore[arg-type]
        sets = prediction_sets(probs[test], calibrated, seed=100 + split)
        coverages.append(set_coverage(sets, labels[test]))
        sizes.append(mean_set_size(sets))
    return torch.tensor(coverages, dtype=torch.float64), torch.tensor(sizes, dtype=torch.float64)


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["lac", "aps", "raps"])
def test_zoo_mlp_coverage_over_20_splits(mlp_probs: tuple[torch.Tensor, torch.Tensor], method: str) -> None:
    """20 random 5,000 / 5,000 calibration / test splits of the real test split, alpha = 0.1.

    One split's coverage varies around ``1 - alpha`` by the Beta spread of the calibrated quantile plus the
    binomial spread of the test share: ``sd = sqrt(alpha (1 - alpha) (1 / (n + 2) + 1 / m))`` (0.006 here). The
    guarantee ``>= 1 - alpha`` is on the expectation, so the mean of 20 splits may fall a little under it: it
    must lie within ``[1 - alpha - 3 sd / sqrt(20), 1 - alpha + 1 / (n + 1) + 0.01]``, each split within 4 sd.
    """
    probs, labels = mlp_probs
    coverages, _ = _splits(probs, labels, method)
    n = m = labels.numel() // 2
    sd = math.sqrt(0.1 * 0.9 * (1 / (n + 2) + 1 / m))
    mean = float(coverages.mean())
    assert 0.9 - 3 * sd / math.sqrt(20) <= mean <= 0.9 + 1 / (n + 1) + 0.01, mean
    assert bool(((coverages >= 0.9 - 4 * sd) & (coverages <= 0.9 + 1 / (n + 1) + 4 * sd)).all()), coverages


@pytest.mark.realdata
def test_zoo_mlp_raps_sets_are_smaller_than_aps(mlp_probs: tuple[torch.Tensor, torch.Tensor]) -> None:
    probs, labels = mlp_probs
    _, aps = _splits(probs, labels, "aps")
    _, raps = _splits(probs, labels, "raps")
    assert float(raps.mean()) < float(aps.mean()), (float(raps.mean()), float(aps.mean()))
