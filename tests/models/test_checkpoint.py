"""The one checkpoint reader: every way a file can be wrong ends in one CheckpointError line naming the file."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from lit_deep.models import MLP, CheckpointError, describe, read_checkpoint


def _good(path: Path) -> Path:
    net = MLP(hidden=(4,), num_classes=3, seed=0)
    weights = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": weights, "hyper_parameters": {"model": describe(net)}, "lit_deep_module": "x.Y"}, path)
    return path


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("ran",))


def _write(path: Path, kind: str) -> Path:
    if kind == "pickled-zip":
        torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload()}}, path)
    elif kind == "pickled-legacy":
        torch.save(
            {"state_dict": {}, "hyper_parameters": {"x": _Payload()}}, path, _use_new_zipfile_serialization=False
        )
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"a": _Payload()}))
    elif kind == "truncated":
        data = _good(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "list-hparams":
        torch.save({"state_dict": {}, "hyper_parameters": [1, 2]}, path)
    elif kind == "string-tensors":
        torch.save({"state_dict": {"model.w": "abc"}, "hyper_parameters": {}}, path)
    elif kind == "nan-hidden":
        desc = describe(MLP(hidden=(4,), num_classes=3))
        desc["init_args"]["hidden"] = [float("nan")]
        torch.save({"state_dict": {}, "hyper_parameters": {"model": desc}}, path)
    elif kind == "huge-declared":
        desc = describe(MLP(hidden=(4,), num_classes=3))
        torch.save({"state_dict": {"model.head.weight": torch.zeros(4, 3)}, "hyper_parameters": {"model": desc}}, path)
        with zipfile.ZipFile(path) as archive:  # keep the file valid; the declared shape is what a reader sees
            assert archive.namelist()
    elif kind == "module-class-not-str":
        torch.save({"state_dict": {}, "hyper_parameters": {}, "lit_deep_module": 3}, path)
    elif kind == "ordered-dict-weights":
        torch.save({"state_dict": OrderedDict(), "hyper_parameters": {"model": {"class_path": "os.system"}}}, path)
    return path


CASES = {
    "pickled-zip": "holds pickled objects, not plain data",
    "pickled-legacy": "not a zip-format torch checkpoint",
    "plain-pickle": "not a zip-format torch checkpoint",
    "truncated": r"not a zip-format torch checkpoint|not a readable torch checkpoint",
    "empty": "not a zip-format torch checkpoint",
    "text": "not a zip-format torch checkpoint",
    "list": "expected a dict of checkpoint entries, got list",
    "list-hparams": "hyper_parameters: expected a dict of named values, got list",
    "string-tensors": "state_dict: entry 'model.w' is a str, not a tensor",
    "nan-hidden": "hidden",
    "huge-declared": "does not fit",
    "module-class-not-str": "lit_deep_module: expected a class path string, got 3",
    "ordered-dict-weights": "'os.system' is not an allowed model class",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_bad_checkpoint_is_one_line_naming_the_file(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _write(tmp_path / f"{kind}.ckpt", kind)
    with pytest.raises(CheckpointError, match=CASES[kind]) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"checkpoint {str(path)!r}: "), message
    assert "weights_only=False" not in message  # torch's advice, never right for a file from elsewhere
    assert "ran" not in capsys.readouterr().out  # nothing in the file was executed


def test_missing_file_and_wrong_type() -> None:
    with pytest.raises(CheckpointError, match="checkpoint 'nowhere.ckpt': no such file"):
        read_checkpoint("nowhere.ckpt")
    with pytest.raises(TypeError, match="checkpoint: expected a file path, got int"):
        read_checkpoint(3)  # type: ignore[arg-type]


def test_a_good_checkpoint_gives_its_parts(tmp_path: Path) -> None:
    found = read_checkpoint(_good(tmp_path / "good.ckpt"), require_model=True)
    assert found.module_class == "x.Y" and found.hparams["model"]["class_path"] == "lit_deep.models.MLP"
    assert sorted(found.weights) == sorted(MLP(hidden=(4,), num_classes=3).state_dict())
    assert found.model().head.out_features == 3


def test_require_model_refuses_a_checkpoint_without_a_description(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "bare.ckpt")
    assert read_checkpoint(tmp_path / "bare.ckpt").description is None
    with pytest.raises(CheckpointError, match="the model is not described in the checkpoint"):
        read_checkpoint(tmp_path / "bare.ckpt", require_model=True)


class _UserNet(torch.nn.Module):
    """A model lit_deep cannot describe (not registered), as a transformers or timm model is."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_classifier_of_an_undescribed_model_says_to_pass_model(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from lit_deep import Classifier

    module = Classifier(_UserNet())
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "user.ckpt")
    with pytest.raises(CheckpointError, match=r"user.ckpt': the model is not described in the checkpoint .*model="):
        Classifier.load_from_checkpoint(tmp_path / "user.ckpt")
    loaded = Classifier.load_from_checkpoint(tmp_path / "user.ckpt", model=_UserNet())
    assert torch.equal(loaded.model.linear.weight, module.model.linear.weight)


@pytest.mark.parametrize("kind", ["empty", "truncated", "pickled-zip", "list-hparams"])
def test_the_command_line_says_it_in_one_line(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lit_deep.cli import main
    from lit_deep.zoo.release import cli as zoo_cli

    path = _write(tmp_path / f"{kind}.ckpt", kind)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "baseline.yaml"
    assert main(["fit", "--config", str(recipe), "--ckpt_path", str(path), "--trainer.max_epochs", "1"]) == 2
    assert zoo_cli.main(["export", "mlp.fmnist", "--ckpt", str(path), "--out", str(tmp_path / "out")]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert line.count(f"checkpoint {str(path)!r}: ") == 1, line  # named once, not wrapped twice
        assert "Traceback" not in line
