"""The table of bad inputs and faults: each gives one clear message naming the argument (and the fix).

``CLI`` rows run ``lit-deep`` in-process and check its exit code and its single stderr line; ``DEMO`` rows run
``lit-deep demo`` (validation happens before any work); ``API`` rows call the Python API and check the
exception. Faults (a full disk, an unwritable folder, a diverging run, tampered files) are injected for real
where possible, else with an ``OSError`` raised at the point of writing.
"""

from __future__ import annotations

import errno
import gzip
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lit_deep import Classifier
from lit_deep.callbacks import LayerStats, MaxNorm
from lit_deep.cli import main
from lit_deep.data import DataNotFoundError, DistributedBatchSampler, FashionMNISTDataModule, IDXError, read_idx
from lit_deep.data import fashion_mnist as fm
from lit_deep.data._idx import parse_idx
from lit_deep.models import MLP
from lit_deep.modules import DivergenceError
from lit_deep.uncertainty import mc_predict
from tests.conftest import FILE_NAMES, FakeFMNIST, write_fake_fmnist

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "baseline.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]
CLI, DEMO, API = "cli", "demo", "api"


def _callbacks(class_path: str, **init_args: Any) -> list[str]:
    import json

    return ["--trainer.callbacks", json.dumps([{"class_path": class_path, "init_args": init_args}])]


def _full_disk_at_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lit_deep.plugins.torch.save", no_space)


def _refusing_mkstemp(folder: Path, real: Callable[..., tuple[int, str]]) -> Callable[..., tuple[int, str]]:
    def read_only(*a: Any, dir: Any = None, **k: Any) -> tuple[int, str]:
        if dir is not None and Path(dir) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    return read_only


def _full_disk_at_results(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "results.json")

    monkeypatch.setattr("lit_deep.cli.write_json", no_space)


def _nan_inputs(data: FakeFMNIST, tmp_path: Path) -> None:
    import lightning.pytorch as pl

    x = torch.full((8, 1, 28, 28), float("nan"))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8, dtype=torch.long)), 4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(Classifier(MLP(hidden=(8,), seed=0)), loader)


def _huge_idx(data: FakeFMNIST, tmp_path: Path) -> None:
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 64)
    read_idx(path)


def _tampered_cache_file(data: FakeFMNIST, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_fake_fmnist(cache, n_train=12)  # not the real files: the checksum must catch them
    fm._load_verified(cache / FILE_NAMES["train"][0])


def _truncated_gzip(data: FakeFMNIST, tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 4) + b"abcd")[:-6])
    read_idx(path)


def _resume_other_batch_size(data: FakeFMNIST, tmp_path: Path) -> None:
    sampler = DistributedBatchSampler(40, 8, shuffle=True)
    next(iter(sampler))
    DistributedBatchSampler(40, 16, shuffle=True).load_state_dict(sampler.state_dict())


def _dm(**kwargs: Any) -> Callable[[FakeFMNIST, Path], object]:
    return lambda data, tmp_path: FashionMNISTDataModule(str(data.path), **kwargs)


def _mc(**kwargs: Any) -> Callable[[FakeFMNIST, Path], object]:
    net = MLP(hidden=(4,), dropout=0.5, dropout_kind="mc", seed=0)
    return lambda data, tmp_path: mc_predict(net, torch.rand(2, 1, 28, 28), samples=2, seed=0, **kwargs)


def _zoo_folder(tmp_path: Path, **config: Any) -> str:
    """A local zoo folder (what ``save_pretrained`` writes) of a 10-class MLP, with ``config`` in config.json."""
    import json

    from safetensors.torch import save_file

    from lit_deep.models import Preprocess, describe
    from lit_deep.zoo._format import assemble

    model = assemble(MLP(hidden=(4,), seed=0), Preprocess())
    folder = tmp_path / "zoo-model"
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"lit_deep_zoo_format": 2, "model": describe(model), **config}))
    return str(folder)


def _zoo_load(config: dict[str, Any] | None = None, **kwargs: Any) -> Callable[[FakeFMNIST, Path], object]:
    from lit_deep import zoo

    return lambda data, tmp_path: zoo.load(_zoo_folder(tmp_path, **(config or {})), **kwargs)


def _deep_config(data: FakeFMNIST, tmp_path: Path) -> None:
    from lit_deep import zoo

    folder = Path(_zoo_folder(tmp_path))
    (folder / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    zoo.load(str(folder))


def _huge_config(data: FakeFMNIST, tmp_path: Path) -> None:
    from lit_deep import zoo

    folder = Path(_zoo_folder(tmp_path))
    (folder / "config.json").write_text("{}" + " " * (1 << 20))
    zoo.load(str(folder))


def _bad_namespace_env(data: FakeFMNIST, tmp_path: Path) -> None:
    import os
    from unittest import mock

    from lit_deep import zoo

    with mock.patch.dict(os.environ, {"LIT_DEEP_HUB_NAMESPACE": "a/b"}):
        zoo.load("mlp.fmnist")


_P = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
_Y = torch.tensor([0, 1, 1])


def _unc(function: str, *args: Any, **kwargs: Any) -> Callable[[FakeFMNIST, Path], object]:
    """``lit_deep.uncertainty.<function>`` (``"module.function"``: of that submodule) called with the arguments."""
    import importlib

    module, _, name = function.rpartition(".")
    found = importlib.import_module(f"lit_deep.uncertainty{'.' + module if module else ''}")
    return lambda data, tmp_path: getattr(found, name)(*args, **kwargs)


def _fit_temperature_labels_beyond_classes(data: FakeFMNIST, tmp_path: Path) -> None:
    from lit_deep.uncertainty import fit_temperature

    fit_temperature(torch.nn.Linear(4, 3), (torch.rand(5, 4), torch.tensor([0, 1, 2, 3, 0])))


def _never_ran_dropout(data: FakeFMNIST, tmp_path: Path) -> None:
    from tests.uncertainty.test_unsampled_dropout import Net

    mc_predict(Net(untraceable=True), torch.rand(2, 5, 8), samples=2, seed=0, enable_dropout=True)


def _missing_test_split(data: FakeFMNIST, tmp_path: Path) -> None:
    for name in FILE_NAMES["test"]:
        (data.path / name).unlink()
    fm.load_fashion_mnist("test", data.path)


CASES = [
    # --- the CLI: constructor arguments (LightningCLI's wrapping unwrapped to the constructor's message)
    pytest.param(CLI, ["--data.init_args.task=C"], "task: must be one of ('full', 'A', 'B'), got 'C'", id="task"),
    pytest.param(CLI, ["--model.init_args.lr=0"], "lr: must be a finite number > 0, got 0.0", id="lr-zero"),
    pytest.param(CLI, ["--model.init_args.lr=-1"], "lr: must be a finite number > 0, got -1.0", id="lr-negative"),
    pytest.param(CLI, ["--model.init_args.l2=-1"], "l2: must be a finite number >= 0, got -1.0", id="l2"),
    pytest.param(
        CLI, ["--model.init_args.optimizer=adamm"], "--model.init_args.optimizer: must be one of", id="optimizer"
    ),
    pytest.param(CLI, ["--model.init_args.mc_samples=-1"], "mc_samples: must be an integer >= 0", id="mc-samples"),
    pytest.param(
        CLI,
        ["--model.init_args.model.init_args.dropout=-0.5"],
        "dropout: must be a number in [0, 1), got -0.5",
        id="dropout",
    ),
    pytest.param(CLI, ["--data.init_args.batch_size=0"], "batch_size: must be an integer >= 1, got 0", id="batch-0"),
    pytest.param(
        CLI,
        ["--model.init_args.model.init_args.hidden=[200000,200000]"],
        "hidden: a 200000 x 200000 layer is 4.0e10 parameters, more than the 2.1e9 limit (MAX_PARAMETERS)",
        id="hidden-huge",
    ),
    pytest.param(
        CLI,
        ["--data.init_args.batch_size=2.5"],
        "--data.init_args.batch_size: must be an integer, got 2.5",
        id="batch-2.5",
    ),
    pytest.param(CLI, ["--data.init_args.val_size=0"], "val_size: must be an integer in [1, 59999]", id="val-size"),
    pytest.param(CLI, ["--data.init_args.b_classes=[5, 5]"], "b_classes: the two classes overlap", id="b-classes"),
    pytest.param(CLI, ["--data.init_args.b_train_size=0"], "b_train_size: must be an integer >= 1", id="b-train-size"),
    pytest.param(CLI, ["--data.init_args.max_shift=-1"], "max_shift: must be an integer >= 0", id="max-shift"),
    pytest.param(CLI, ["--model.init_args.lr=abc"], "--model.init_args.lr: must be a number, got abc", id="lr-text"),
    pytest.param(CLI, ["--trainer.max_epochz=3"], "unrecognized arguments: --trainer.max_epochz=3", id="typo-flag"),
    pytest.param(
        CLI, _callbacks("lit_deep.callbacks.MaxNorm", max_value=-1), "max_value: must be a finite", id="maxnorm"
    ),
    pytest.param(
        CLI,
        _callbacks("lit_deep.callbacks.LayerStats", every_n_steps=0),
        "every_n_steps: must be an integer >= 1",
        id="layerstats",
    ),
    # --- the CLI: data, output, checkpoints, divergence, full disk
    pytest.param(
        CLI,
        ["--data.init_args.data_dir=/nonexistent/typo"],
        "data_dir: folder /nonexistent/typo does not exist; fix data_dir",
        id="data-dir-typo",
    ),
    pytest.param(CLI, ["<file>/out"], "--trainer.default_root_dir: cannot write to", id="output-under-a-file"),
    pytest.param(CLI, ["<readonly>"], "--trainer.default_root_dir: cannot write to", id="output-read-only"),
    pytest.param(CLI, ["--ckpt_path=last"], "--ckpt_path last: no last checkpoint in", id="ckpt-last"),
    pytest.param(CLI, ["--ckpt_path=missing.ckpt"], "--ckpt_path: no checkpoint file missing.ckpt", id="ckpt-file"),
    pytest.param(
        CLI,
        ["--model.init_args.lr=1e6", "--data.init_args.batch_size=4", "--trainer.max_epochs=3"],
        "training diverged: train_loss is nan at global step",
        id="diverged-lr",
    ),
    pytest.param(
        CLI,
        ["<full-disk-checkpoint>"],
        ".ckpt: No space left on device; choose a writable output folder",
        id="disk-ckpt",
    ),
    pytest.param(CLI, ["<full-disk-results>"], "cannot write results.json: No space left on device", id="disk-results"),
    # --- the demo: every option checked before any work
    pytest.param(DEMO, ["--mc-samples", "0"], "--mc-samples: must be at least 1, got 0", id="demo-mc-samples"),
    pytest.param(DEMO, ["--epochs", "0"], "--epochs: must be at least 1, got 0", id="demo-epochs"),
    pytest.param(
        DEMO, ["--unfreeze-at", "50", "--epochs", "2"], "--unfreeze-at: 50 is not below --epochs 2", id="demo-unfreeze"
    ),
    pytest.param(
        DEMO, ["--source-model", "nope"], "--source-model: no zoo model 'nope'; choose one of", id="demo-model"
    ),
    pytest.param(DEMO, ["--seeds", "0"], "--seeds: must be at least 1, got 0", id="demo-seeds"),
    pytest.param(
        DEMO, ["--b-classes", "5", "5"], "--b-classes: expected two different class indices", id="demo-b-same"
    ),
    pytest.param(DEMO, ["--b-classes", "5", "12"], "--b-classes: expected two different class indices", id="demo-b-12"),
    pytest.param(DEMO, ["--max-lr", "0"], "--max-lr: must be a positive number, got 0.0", id="demo-max-lr"),
    pytest.param(DEMO, ["--max-lr", "nan"], "--max-lr: must be a positive number, got nan", id="demo-max-lr-nan"),
    pytest.param(DEMO, ["--b-train-size", "0"], "--b-train-size: must be at least 1, got 0", id="demo-b-train"),
    pytest.param(DEMO, ["--top", "-1"], "--top: must be at least 0, got -1", id="demo-top"),
    pytest.param(DEMO, ["--devices", "two"], "--devices: expected a count, ids like 0,1", id="demo-devices"),
    pytest.param(DEMO, ["--num-nodes", "0"], "--num-nodes: must be at least 1, got 0", id="demo-nodes"),
    pytest.param(DEMO, ["--output", "<file>/out"], "--output: cannot write to", id="demo-output"),
    pytest.param(DEMO, ["--epochs", "many"], "argument --epochs: invalid int value: 'many'", id="demo-epochs-text"),
    # --- the Python API
    pytest.param(
        API,
        _dm(b_classes=(True, False)),
        "b_classes: expected two class indices in 0..9, got (True, False)",
        id="api-b-bool",
    ),
    pytest.param(API, _dm(batch_size=2.5), "batch_size: must be an integer >= 1, got 2.5", id="api-batch-float"),
    pytest.param(API, _dm(val_size=2.5), "val_size: must be an integer in [1, 59999], got 2.5", id="api-val-float"),
    pytest.param(API, _dm(eval_batch_size="8"), "eval_batch_size: must be an integer >= 1, got '8'", id="api-eval-str"),
    pytest.param(API, _dm(b_classes="56"), "b_classes: expected two class indices in 0..9, got '56'", id="api-b-str"),
    pytest.param(API, _dm(seed=-1), "seed: must be an integer >= 0, got -1", id="api-seed"),
    pytest.param(API, _dm(standardize="yes"), "standardize: must be True or False, got 'yes'", id="api-standardize"),
    pytest.param(API, _dm(train_size=0), "train_size: must be None or an integer >= 1, got 0", id="api-train-size"),
    pytest.param(
        API,
        _huge_idx,
        "huge.idx: file is truncated: dimensions (4294967295, 4294967295, 4294967295) need",
        id="idx-huge",
    ),
    pytest.param(
        API, lambda d, t: parse_idx(b"\x01\x00\x08\x01", "bad.idx"), "bad.idx: bad magic number", id="idx-magic"
    ),
    pytest.param(API, _truncated_gzip, "t.gz: the gzip stream is truncated or corrupted", id="idx-gzip"),
    pytest.param(
        API, _tampered_cache_file, "train-images-idx3-ubyte.gz: SHA-256 of the decompressed data is", id="cache-sha"
    ),
    pytest.param(
        API,
        _missing_test_split,
        "lacks t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (test split)",
        id="data-dir-partial",
    ),
    pytest.param(
        API,
        lambda d, t: fm.locate_fashion_mnist("valid", d.path),
        "split: must be one of ('train', 'test'), got 'valid'",
        id="split",
    ),
    pytest.param(
        API, _resume_other_batch_size, "batch_size: the checkpoint stopped in the middle of epoch 0", id="resume-batch"
    ),
    pytest.param(
        API, lambda d, t: LayerStats(every_n_steps=0), "every_n_steps: must be an integer >= 1", id="api-layerstats"
    ),
    pytest.param(API, lambda d, t: MaxNorm(max_value=-1.0), "max_value: must be a finite number > 0", id="api-maxnorm"),
    # --- newly caught: values that used to pass the checks and fail inside torch (or not at all)
    pytest.param(
        API, lambda d, t: MLP(num_classes=True), "num_classes: must be an integer >= 1, got True", id="mlp-classes-bool"
    ),
    pytest.param(
        API,
        lambda d, t: MLP(hidden=(4.5,)),
        "hidden: must be a sequence of integers >= 1, got (4.5,)",
        id="mlp-hidden-float",
    ),
    pytest.param(
        API,
        lambda d, t: MLP(hidden=(True,)),
        "hidden: must be a sequence of integers >= 1, got (True,)",
        id="mlp-hidden-bool",
    ),
    pytest.param(API, lambda d, t: MLP(seed=-1), "seed: must be None or an integer >= 0, got -1", id="mlp-seed"),
    pytest.param(
        API,
        lambda d, t: MLP(input_shape=(1, -1, 28)),
        "input_shape: must be a non-empty sequence of integers >= 1, got (1, -1, 28)",
        id="mlp-input-shape",
    ),
    pytest.param(
        API,
        lambda d, t: FashionMNISTDataModule(123),  # type: ignore[arg-type]
        "data_dir: must be None or a path (str or os.PathLike), got 123",
        id="dm-data-dir-number",
    ),
    pytest.param(
        API,
        lambda d, t: fm.load_fashion_mnist("train", 123),  # type: ignore[arg-type]
        "data_dir: must be None or a path (str or os.PathLike), got 123",
        id="load-data-dir-number",
    ),
    pytest.param(API, _mc(batch_size=2.5), "batch_size: must be an integer >= 1, got 2.5", id="mc-batch-float"),
    pytest.param(API, _mc(batch_size="8"), "batch_size: must be an integer >= 1, got '8'", id="mc-batch-str"),
    pytest.param(API, _mc(batch_size=True), "batch_size: must be an integer >= 1, got True", id="mc-batch-bool"),
    pytest.param(
        API, _mc(max_elements=float("nan")), "max_elements: must be an integer >= 1, got nan", id="mc-max-elements-nan"
    ),
    pytest.param(
        API, _nan_inputs, "training diverged: train_loss is nan at global step 0, epoch 0, batch 0", id="nan-inputs"
    ),
    # --- metric, score and calibrator inputs: one check for probabilities, one for class targets
    pytest.param(
        API,
        _unc("calibration_report", torch.full((3, 3), 0.9), _Y),
        "probs: rows must sum to 1 (within 0.001 for torch.float32), got 3 rows with sums in [2.7, 2.7]",
        id="metrics-rows-2.7",
    ),
    pytest.param(
        API,
        _unc("calibration_report", torch.full((3, 2), float("nan")), _Y),
        "probs: must be finite probabilities, got 6 NaN or infinite values of 6",
        id="metrics-all-nan",
    ),
    pytest.param(
        API,
        _unc("calibration_report", torch.tensor([[1.2, -0.2], [0.5, 0.5], [0.5, 0.5]]), _Y),
        "probs: must be probabilities in [0, 1], got values in [-0.2, 1.2]; these look like logits",
        id="metrics-negative",
    ),
    pytest.param(
        API,
        _unc("expected_calibration_error", torch.tensor([[2.0, -1.0], [0.3, 1.5], [-0.5, 0.1]]), _Y),
        "these look like logits: apply a softmax first",
        id="metrics-logits",
    ),
    pytest.param(
        API,
        _unc("accuracy", _P, torch.tensor([0.7, 1.0, 1.0])),
        "targets: must be integer class indices (an integer dtype, not truncated floats), got dtype torch.float32",
        id="metrics-float-targets",
    ),
    pytest.param(
        API,
        _unc("plots.reliability_bins", _P, _Y, n_bins=True),
        "n_bins: must be an integer >= 1, got True",
        id="bins-bool",
    ),
    pytest.param(
        API,
        _unc("expected_calibration_error", _P, _Y, n_bins=True),
        "n_bins: must be an integer >= 1, got True",
        id="ece-bins-bool",
    ),
    pytest.param(
        API,
        _unc("aurc", _P, _Y, scores=torch.tensor([0.1, float("nan"), 0.2])),
        "scores: must be finite, got 1 NaN or infinite values",
        id="aurc-scores-nan",
    ),
    pytest.param(
        API,
        _unc("uncertainty_score", torch.tensor([[3.0, -2.0]]), "entropy"),
        "prediction: must be probabilities in [0, 1], got values in [-2, 3]; these look like logits",
        id="score-logits",
    ),
    pytest.param(
        API,
        _unc("temperature.temperature_from_logits", torch.full((3, 2), float("nan")), _Y),
        "logits: must be finite, got 6 NaN or infinite values of 6",
        id="temperature-nan-logits",
    ),
    pytest.param(
        API,
        _unc("temperature.temperature_from_logits", torch.zeros(3, 2), _Y, max_iter=0),
        "max_iter: must be an integer >= 1, got 0",
        id="temperature-max-iter-0",
    ),
    pytest.param(
        API,
        _fit_temperature_labels_beyond_classes,
        "targets: class indices must be in [0, 3) (3 classes), got values in [0, 3]",
        id="fit-temperature-label-3",
    ),
    pytest.param(
        API,
        _never_ran_dropout,
        "model: Net has dropout modules that never ran in its forward pass: attn.attn_drop (Dropout, p=0.1);",
        id="mc-dropout-never-ran",
    ),
    # --- values read from config.json, checked against the model they describe (the message names the file)
    pytest.param(
        API,
        _zoo_load({"temperature": 1e-320}),
        "config.json: temperature must be a finite number in [0.001, 1000], got 1e-320",
        id="zoo-temperature-tiny",
    ),
    pytest.param(
        API,
        _zoo_load({"temperature": 1e6}),
        "config.json: temperature must be a finite number in [0.001, 1000], got 1000000.0",
        id="zoo-temperature-huge",
    ),
    pytest.param(
        API,
        _zoo_load({"class_names": ["a", "b", "c"]}),
        "config.json: class_names must be 10 names, one per output of the model's head, got 3",
        id="zoo-class-names",
    ),
    pytest.param(
        API,
        _zoo_load({"class_names": "abc"}),
        "config.json: class_names must be a list of strings, got 'abc'",
        id="zoo-class-names-str",
    ),
    pytest.param(API, _deep_config, "/config.json (a local folder): nested too deeply to parse", id="zoo-config-deep"),
    pytest.param(
        API, _huge_config, "/config.json (a local folder): 1048578 bytes, more than the 1048576", id="zoo-config-huge"
    ),
    pytest.param(
        API, _zoo_load(calibrated="no"), "calibrated: must be True or False, got 'no'", id="zoo-calibrated-str"
    ),
    pytest.param(
        API,
        _zoo_load(namespace="../.."),
        "namespace: must be a Hub user or organisation name",
        id="zoo-namespace-dots",
    ),
    pytest.param(
        API,
        lambda d, t: __import__("lit_deep.zoo", fromlist=["load"]).load("mlp.fmnist", namespace="../.."),
        "namespace: must be a Hub user or organisation name (letters, digits, '-', '_', '.'; no '..'), got '../..'",
        id="zoo-namespace-registered",
    ),
    pytest.param(
        API,
        _bad_namespace_env,
        "LIT_DEEP_HUB_NAMESPACE: must be a Hub user or organisation name",
        id="zoo-namespace-env",
    ),
]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFMNIST:
    monkeypatch.setattr(sys, "argv", ["lit-deep"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    monkeypatch.delenv("LIT_DEEP_DEBUG", raising=False)
    return write_fake_fmnist(tmp_path / "fmnist", n_train=42, n_test=8)


def _substitute(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    out = []
    for arg in args:
        if arg.startswith("<file>"):
            blocker = tmp_path / "a-file"
            blocker.write_text("")
            arg = str(blocker) + arg[len("<file>") :]
            out += ["--trainer.default_root_dir", arg] if len(args) == 1 else [arg]
        elif arg == "<readonly>":
            folder = tmp_path / "read-only"
            folder.mkdir()

            # root ignores chmod: inject the refusal
            monkeypatch.setattr(tempfile, "mkstemp", _refusing_mkstemp(folder, tempfile.mkstemp))
            out += ["--trainer.default_root_dir", str(folder)]
        elif arg == "<full-disk-checkpoint>":
            _full_disk_at_checkpoint(monkeypatch)
        elif arg == "<full-disk-results>":
            _full_disk_at_results(monkeypatch)
        else:
            out.append(arg)
    return out


@pytest.mark.parametrize(("kind", "args", "fragment"), CASES)
def test_bad_input_gives_one_clear_message(
    kind: str, args: Any, fragment: str, data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    if kind == API:
        with pytest.raises((ValueError, DataNotFoundError, IDXError, DivergenceError)) as info:
            args(data, tmp_path)
        assert fragment in str(info.value)
        assert "\n" not in str(info.value)
        return
    if kind == DEMO:
        argv = ["demo", *_substitute(args, tmp_path, monkeypatch)]
        if "--output" not in argv:
            argv += ["--output", str(tmp_path / "demo")]
    else:
        argv = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tmp_path / 'run'}"]
        argv += [f"--data.init_args.data_dir={data.path}", "--data.init_args.val_size=10", "--test_after_fit=false"]
        argv += ["--trainer.max_epochs=1", *QUIET, *_substitute(args, tmp_path, monkeypatch)]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lit-deep: error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert code == (1 if "diverged" in fragment else 2)


def test_the_table_has_at_least_forty_rows() -> None:
    assert len(CASES) >= 40


def test_debug_shows_the_traceback(data: FakeFMNIST, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIT_DEEP_DEBUG", "1")
    with pytest.raises(ValueError, match="--epochs: must be at least 1, got 0"):
        main(["demo", "--epochs", "0"])


def test_a_failed_checkpoint_write_leaves_no_file_under_the_final_name(data, tmp_path, monkeypatch, capsys) -> None:
    argv = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.max_epochs=2"]
    argv += [f"--data.init_args.data_dir={data.path}", "--data.init_args.val_size=10", "--test_after_fit=false", *QUIET]
    assert main(argv) == 0
    checkpoints = tmp_path / "run" / "checkpoints"
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    assert "last.ckpt" in before
    _full_disk_at_checkpoint(monkeypatch)
    assert main([*argv, "--trainer.max_epochs=3", "--ckpt_path=last"]) == 2
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before  # no truncated file, no temp file
