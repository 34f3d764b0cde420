"""zoo.rank: LogME against the paper's formula evaluated independently, LEEP by hand, ranking the real zoo."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from lit_deep import zoo
from lit_deep.models import MLP
from lit_deep.zoo import REGISTRY
from lit_deep.zoo.transferability import TransferScore, _fit_column, cut_points, leep, logme, rank
from tests.conftest import REAL_DIR


def _direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The paper's log evidence per sample, straight from its definition (A, m built explicitly)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    value = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - logdet / 2
        - beta / 2 * np.sum((f @ m - y) ** 2)
        - alpha / 2 * m @ m
        - n / 2 * np.log(2 * np.pi)
    )
    return float(value / n)


def _gaussian_marginal(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The same evidence as a density: y ~ N(0, I / beta + F F^T / alpha), per sample."""
    n = f.shape[0]
    cov = np.eye(n) / beta + f @ f.T / alpha
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(cov, y)) / n)


def _column_fit(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    t = torch.from_numpy(f)
    u, s, _ = torch.linalg.svd(t, full_matrices=False)
    col = torch.from_numpy(y)
    return _fit_column(s**2, u.T @ col, float(col @ col), f.shape[0], f.shape[1], 100, 1e-12)


@pytest.mark.parametrize(("n", "d"), [(60, 5), (20, 40)])  # tall and wide features (D > N: the null directions)
def test_logme_matches_the_closed_form_and_is_a_maximum(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
    evidence, alpha, beta = _column_fit(f, y)
    assert evidence == pytest.approx(_direct_evidence(f, y, alpha, beta), abs=1e-9)
    assert evidence == pytest.approx(_gaussian_marginal(f, y, alpha, beta), abs=1e-9)
    for da, db in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95), (1.05, 1.05), (0.95, 0.95), (1.05, 0.95)]:
        assert _direct_evidence(f, y, alpha * da, beta * db) < evidence
    # The public score is the mean over the one-hot columns of both classes.
    labels = torch.from_numpy(y).long()
    both = [_column_fit(f, (y == c).astype(np.float64))[0] for c in (0, 1)]
    assert logme(torch.from_numpy(f), labels) == pytest.approx(sum(both) / 2, abs=1e-9)


def test_logme_prefers_separable_features_and_ignores_label_values() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(120) % 3
    separable = torch.randn(120, 16, generator=g) + 3 * nn.functional.one_hot(y, 16).double()
    noise = torch.randn(120, 16, generator=g)
    assert logme(separable, y) > logme(noise, y) + 0.3
    assert logme(separable, y * 7 + 2) == pytest.approx(logme(separable, y))  # labels renumbered


def test_logme_of_zero_features_is_the_noise_model() -> None:
    y = torch.tensor([0, 1, 1, 0])
    # beta = N / ||y||^2 = 2 for each column: log(2) / 2 - 1/2 - log(2 pi) / 2
    assert logme(torch.zeros(4, 3), y) == pytest.approx(0.5 * math.log(2) - 0.5 - 0.5 * math.log(2 * math.pi))


def test_leep_by_hand() -> None:
    theta = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    # Joint P(y, z) = 1/3 sum theta over rows of y: y=0: (1.4, 0.6)/3; y=1: (0.3, 0.7)/3; P(z) = (1.7, 1.3)/3.
    # P(y=0|z) = (1.4/1.7, 0.6/1.3); P(y=1|z) = (0.3/1.7, 0.7/1.3).
    p0 = (1.4 / 1.7, 0.6 / 1.3)
    p1 = (0.3 / 1.7, 0.7 / 1.3)
    eep = [0.8 * p0[0] + 0.2 * p0[1], 0.6 * p0[0] + 0.4 * p0[1], 0.3 * p1[0] + 0.7 * p1[1]]
    assert leep(theta, labels) == pytest.approx(sum(math.log(e) for e in eep) / 3, abs=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: logme(torch.zeros(4), torch.tensor([0, 1, 0, 1])), "features: must be a real tensor [N, D]"),
        (lambda: logme(torch.zeros(4, 2), torch.tensor([0, 0, 0, 0])), "labels: must hold at least 2"),
        (lambda: logme(torch.zeros(4, 2), torch.tensor([0.0, 1, 0, 1])), "labels: must be integer class indices"),
        (lambda: logme(torch.zeros(4, 2), torch.tensor([0, 1])), "labels: expected shape (4,)"),
        (lambda: logme(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), tol=0), "tol: must be a number in (0, 1)"),
        (lambda: leep(torch.ones(2, 2), torch.tensor([0, 1])), "probabilities: each row must sum to 1"),
        (lambda: rank(torch.zeros(4, 28, 28), torch.tensor([0, 1, 0, 1]), cuts=0), "cuts: must be an integer >= 1"),
        (lambda: rank(torch.zeros(4, 28, 28), torch.tensor([0, 1, 0, 1]), batch_size=True), "batch_size: must be"),
        (lambda: rank(torch.zeros(4, 28, 28), torch.tensor([0, 1, 0, 1]), candidates=[3]), "candidates: each must"),  # type: ignore[list-item]
        (lambda: rank(torch.zeros(4, 28, 28), torch.tensor([0, 1, 0, 1]), candidates="cnn.fmnist"), "candidates:"),
        (lambda: rank(torch.zeros(1, 28, 28), torch.tensor([0])), "images: must be a tensor"),
        (lambda: rank(torch.zeros(4, 28, 28, dtype=torch.int32), torch.tensor([0, 1, 0, 1])), "images: must be"),
    ],
)
def test_bad_inputs_name_the_argument(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_cut_points_skip_dropout_tails() -> None:
    model = zoo.load("cnn.fmnist")
    assert cut_points(model.backbone, 3) == [21, 14, 11]  # backbone[:20] is the full backbone up to dropout
    assert cut_points(model.backbone, 1) == [21]


def test_rank_leaves_the_model_as_it_was_and_switches_mc_dropout_off() -> None:
    model = MLP(hidden=(8,), num_classes=3, dropout=0.5, dropout_kind="mc", seed=0).train()
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(30, 28, 28, generator=g), torch.arange(30) % 2
    first = rank(images, labels, candidates=[model])
    assert first == [replace_seconds(r, first[i].seconds) for i, r in enumerate(rank(images, labels, [model]))]
    assert model.training and [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == rates
    assert all(isinstance(r, TransferScore) and r.model == "MLP#0" for r in first)


def replace_seconds(row: TransferScore, seconds: float) -> TransferScore:
    from dataclasses import replace

    return replace(row, seconds=seconds)


@pytest.mark.realdata
def test_rank_the_zoo_on_200_task_b_images() -> None:
    from lit_deep.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(str(REAL_DIR), task="B", b_train_size=200)
    dm.setup()
    assert dm.train_set is not None
    images, labels = dm.train_set.inputs, dm.train_set.targets  # float in [0, 1]: the models preprocess
    start = time.perf_counter()
    rows = rank(images, labels)
    seconds = time.perf_counter() - start
    print(f"\nzoo.rank: {len(rows)} candidates on 200 task-B images in {seconds:.2f} s")
    classifiers = [n for n in zoo.list_models() if zoo.REGISTRY[n].kind in ("classifier", "pretext")]
    assert sorted({r.model for r in rows}) == sorted(classifiers)
    assert [r.logme for r in rows] == sorted((r.logme for r in rows), reverse=True)
    assert all((r.leep is not None) == (r.cut == "backbone") for r in rows)
    assert all(r.leep is not None and -1 < r.leep <= 0 for r in rows if r.cut == "backbone")
    assert sum(r.seconds for r in rows) == pytest.approx(seconds, rel=0.2)
    # The same features scored directly: what the table says is what logme gives.
    cnn = zoo.load("cnn.fmnist")
    with torch.no_grad():
        direct = logme(cnn.backbone(images), labels)
    assert next(r.logme for r in rows if r.model == "cnn.fmnist" and r.cut == "backbone") == pytest.approx(direct)


def test_cli_rank_refuses_a_bad_train_size(capsys: pytest.CaptureFixture[str]) -> None:
    from lit_deep.zoo.release import cli

    assert cli.main(["rank", "--train-size", "1"]) == 2
    assert capsys.readouterr().err.strip() == "lit-deep zoo rank: train_size: must be an integer >= 2, got 1"


@pytest.mark.realdata
def test_cli_rank_prints_the_table_of_the_datamodule_split(capsys: pytest.CaptureFixture[str]) -> None:
    from lit_deep.data import FashionMNISTDataModule
    from lit_deep.zoo.release import cli

    images, labels = cli.task_training_split(str(REAL_DIR), "B", 200)
    dm = FashionMNISTDataModule(str(REAL_DIR), task="B", b_train_size=200)
    dm.setup()
    assert dm.train_set is not None
    assert torch.equal(labels, dm.train_set.targets)
    assert torch.equal(images.unsqueeze(1).float() / 255, dm.train_set.inputs)
    assert cli.main(["rank", "--data", str(REAL_DIR), "--task", "B", "--train-size", "200", "--cuts", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "cut", "dim", "LogME", "LEEP", "seconds"]
    classifiers = [name for name in REGISTRY if REGISTRY[name].kind in ("classifier", "pretext")]
    assert len(out) == 2 + len(classifiers)
    assert out[-1].startswith(f"{len(classifiers)} candidates on 200 task-B training images")
    assert all(line.split()[1] == "backbone" for line in out[1:-1])
