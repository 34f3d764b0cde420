"""FreezeUnfreeze(cache_features=True): the frozen part runs once per example, and training is unchanged.

Every comparison is against the same fit without the cache. On CPU the parameters come out bitwise equal (the
frozen convolutions give each example the same values whatever batch it sits in); the tests assert the issue's
bound, a largest absolute difference <= 1e-5, and report the bitwise case where it holds.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lit_deep import Classifier
from lit_deep.callbacks import FreezeUnfreeze, MaxNorm
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import CNN, MLP, Preprocess
from lit_deep.schedules import OneCycle
from tests.callbacks.helpers import loader, make_trainer, max_abs_diff, snapshot
from tests.conftest import write_fake_fmnist

TOL = 1e-5
INFO = "lightning.pytorch.utilities.rank_zero"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """260 random 28x28 images: 60 for validation, 200 for training (7 batches of 32, the last one of 8)."""
    return write_fake_fmnist(tmp_path_factory.mktemp("fmnist"), n_train=260, n_test=10).path


def _data(data_dir: Path, **kwargs: Any) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(str(data_dir), batch_size=32, val_size=60, eval_batch_size=25, **kwargs)


def _cnn(**kwargs: Any) -> CNN:
    """Conv-BN-ReLU blocks, Flatten, Dropout(0.3), dense, BN, ReLU, Dropout, head: the cut falls at the Flatten."""
    return CNN(channels=(4, 8), convs_per_block=1, dense=16, seed=0, **kwargs)


class Count(Callback):
    """Counts the first conv layer's calls per (stage, epoch): the frozen part runs only where nothing is cached."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, int], int] = {}
        self.frozen_end: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        def hook(*_: Any) -> None:
            key = ("val" if trainer.validating or trainer.sanity_checking else "train", trainer.current_epoch)
            self.calls[key] = self.calls.get(key, 0) + 1

        first = next(m for m in pl_module.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        first.register_forward_hook(hook)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.frozen_end = snapshot(pl_module.model)  # overwritten: the last epoch's


def _fit(root: Path, data: Any, cache: bool, model: nn.Module | None = None, epochs: int = 3, **options: Any) -> Any:
    torch.manual_seed(0)
    unfreeze = options.pop("unfreeze_at_epoch", epochs - 1)
    extra = options.pop("callbacks", [])
    kwargs = {k: options.pop(k) for k in ("cache_gib", "bn") if k in options}
    clf = Classifier(model if model is not None else _cnn(), optimizer="adam", lr=0.01, **options.pop("clf", {}))
    callback = FreezeUnfreeze("backbone", unfreeze, lr_factor=0.1, cache_features=cache, **kwargs)
    count = Count()
    trainer = make_trainer(root, [callback, count, *extra], max_epochs=epochs, **options)
    trainer.fit(clf, data)
    return clf, count, callback


def test_the_cache_trains_the_same_parameters_and_skips_the_frozen_part(tmp_path: Path, data_dir: Path) -> None:
    val = {"limit_val_batches": 1.0, "num_sanity_val_steps": 1}
    plain, plain_count, _ = _fit(tmp_path / "a", _data(data_dir), False, **val)
    cached, count, callback = _fit(tmp_path / "b", _data(data_dir), True, **val)
    assert max_abs_diff(snapshot(plain.model), snapshot(cached.model)) <= TOL  # frozen 2 epochs, then 1 unfrozen
    assert all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), cached.state_dict().values(), strict=True)
    )
    # Epoch 0 computes the frozen part (7 training batches; a sanity and 3 validation batches); epoch 1 reads the
    # cache; epoch 2 unfroze.
    # (+3: the cut's probe runs of two examples, one and two when each split is cut.)
    assert count.calls == {("val", 0): 1 + 3 + 3, ("train", 0): 7 + 3, ("train", 2): 7, ("val", 2): 3}
    assert plain_count.calls[("train", 1)] == 7
    assert callback._cache is None and "forward" not in vars(cached.model)  # given back at unfreezing


def test_with_milestones_max_norm_schedule_and_accumulation(tmp_path: Path, data_dir: Path) -> None:
    def options() -> dict[str, Any]:
        return {
            "unfreeze_at_epoch": {2: "backbone.[4-9]", 3: "backbone"},  # the cut moves down at epoch 2
            "epochs": 4,
            "accumulate_grad_batches": 2,
            "callbacks": [MaxNorm(1.0)],
            "clf": {"schedule": lambda opt: OneCycle(opt, max_lr=0.02, total_steps=20)},
        }

    plain, _, _ = _fit(tmp_path / "a", _data(data_dir), False, **options())
    cached, count, _ = _fit(tmp_path / "b", _data(data_dir), True, **options())
    assert max_abs_diff(snapshot(plain.model), snapshot(cached.model)) <= TOL
    assert count.calls.get(("train", 1), 0) == 0 and count.calls[("train", 2)] == 7 + 3  # cut again: still cached
    assert ("train", 3) in count.calls


def test_bn_train_and_a_frozen_weight_changed_in_place(tmp_path: Path, data_dir: Path) -> None:
    class Nudge(Callback):  # changes a frozen weight at epoch 1: the cache must notice
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    pl_module.model.backbone[0].weight.mul_(0.5)  # the first conv

    plain, _, _ = _fit(tmp_path / "a", _data(data_dir), False, bn="train", callbacks=[Nudge()])
    cached, count, _ = _fit(tmp_path / "b", _data(data_dir), True, bn="train", callbacks=[Nudge()])
    assert max_abs_diff(snapshot(plain.model), snapshot(cached.model)) <= TOL
    assert count.calls.get(("train", 1), 0) == 7  # the cut (before the first BN, in training mode) computed again


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cache_features" in r.getMessage()]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("augment", "train runs without the cache: its batches are augmented (RandomShiftFlip)"),
        ("dropout-first", "train runs without the cache: no frozen layer comes before the first trainable or random"),
        (
            "memory",
            "train runs without the cache: it would take 0.3 MiB (200 examples x 1572 bytes), over the limit of",
        ),
        ("plain-loader", "train runs without the cache: its batches are not lit_deep's fixed in-memory ones"),
    ],
)
def test_declines_with_one_info_line(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture, case: str, expected: str
) -> None:
    def data() -> Any:
        return loader(n=16, num_classes=10) if case == "plain-loader" else _data(data_dir, augment=case == "augment")

    model: nn.Module = _cnn()
    options: dict[str, Any] = {}
    if case == "dropout-first":
        model = MLP(input_shape=(1, 28, 28), hidden=(8,), num_classes=10, seed=0)
        model.backbone.insert(0, nn.Dropout(0.1))
    elif case == "memory":
        options["cache_gib"] = 1e-5  # 10.5 KiB
    elif case == "plain-loader":
        model = MLP(input_shape=(1, 4, 4), hidden=(8,), num_classes=10, seed=0)
    initial = copy.deepcopy(model)
    with caplog.at_level(logging.INFO, logger=INFO):
        plain, _, _ = _fit(tmp_path / "a", data(), False, model=model, **options)
        caplog.clear()
        cached, count, _ = _fit(tmp_path / "b", data(), True, model=initial, **options)
    lines = [m for m in _messages(caplog) if "train" in m]
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert max_abs_diff(snapshot(plain.model), snapshot(cached.model)) == 0.0
    assert count.calls.get(("train", 1), 0) > 0  # computed in full


def test_dropout_inside_the_frozen_part_caches_up_to_it(tmp_path: Path, data_dir: Path) -> None:
    model = _cnn(conv_dropout=0.2)  # Dropout2d after each block: only the first block is cached
    plain, _, _ = _fit(tmp_path / "a", _data(data_dir), False, model=model)
    cached, count, callback = _fit(tmp_path / "b", _data(data_dir), True, model=_cnn(conv_dropout=0.2))
    assert max_abs_diff(snapshot(plain.model), snapshot(cached.model)) <= TOL
    assert count.calls.get(("train", 1), 0) == 0


def test_resume_in_the_frozen_phase_matches_an_uninterrupted_cached_run(tmp_path: Path, data_dir: Path) -> None:
    def fit(root: Path, epochs: int, ckpt: Path | None = None) -> Classifier:
        torch.manual_seed(0)
        clf = Classifier(_cnn(), optimizer="adam", lr=0.01)
        checkpoints = ModelCheckpoint(root / "ckpt", save_top_k=-1, filename="{epoch}")
        callback = FreezeUnfreeze("backbone", 3, lr_factor=0.1, cache_features=True)
        trainer = make_trainer(root, [callback, checkpoints], max_epochs=epochs, enable_checkpointing=True)
        trainer.fit(clf, _data(data_dir), ckpt_path=ckpt)
        return clf

    full = fit(tmp_path / "full", 4)
    resumed = fit(tmp_path / "resumed", 4, tmp_path / "full" / "ckpt" / "epoch=1.ckpt")  # frozen until epoch 3
    assert max_abs_diff(snapshot(full.model), snapshot(resumed.model)) <= TOL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cache_features": "yes"}, "cache_features: must be True or False, got 'yes'"),
        ({"cache_gib": 0}, "cache_gib: must be a finite number > 0, got 0"),
        ({"cache_gib": float("nan")}, "cache_gib: must be a finite number > 0, got nan"),
        ({"cache_gib": "2"}, "cache_gib: must be a finite number > 0, got '2'"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        FreezeUnfreeze("backbone", **kwargs)
    assert str(err.value) == message


def test_a_preprocessing_layer_with_buffers_is_cached_an_unknown_one_is_not(tmp_path: Path, data_dir: Path) -> None:
    class Scale(nn.Module):  # kept whole by the tracer (data-dependent control flow), buffers, training mode
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("factor", torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor if x.sum() > -1e9 else x

    def model(first: nn.Module) -> MLP:
        net = MLP(input_shape=(1, 28, 28), hidden=(8,), num_classes=10, seed=0)
        net.backbone.insert(0, first)
        return net

    _, known, _ = _fit(tmp_path / "a", _data(data_dir), True, model=model(Preprocess((1, 28, 28), per_pixel=True)))
    _, unknown, _ = _fit(tmp_path / "b", _data(data_dir), True, model=model(Scale()))
    assert known.calls.get(("train", 1), 0) == 0
    assert unknown.calls[("train", 1)] == 7
