import argparse
import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from lit_deep.cli import main

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "baseline.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """LightningCLI warns when sys.argv (pytest's here) and args are both given."""
    monkeypatch.setattr(sys, "argv", ["lit-deep"])


def test_console_script_points_at_main():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "lit-deep"]
    assert script.value == "lit_deep.cli:main"


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("fit", "validate", "test", "predict"):
        assert verb in out


def test_unknown_verb_fails_in_one_line(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "invalid choice: 'frobnicate'" in err


def test_no_spurious_args_warning(tiny_fmnist, tmp_path, monkeypatch, recwarn):
    args = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=1"]
    args += [f"--data.init_args.data_dir={tiny_fmnist.path}", "--data.init_args.val_size=10", *QUIET]
    monkeypatch.setattr(sys, "argv", ["lit-deep", *args])  # as the console script sees it
    assert main(args) == 0
    assert not [w for w in recwarn if "args parameter" in str(w.message)]


def test_results_json_is_strict_json(tmp_path):
    import lightning.pytorch as pl
    import torch

    from lit_deep.cli import write_results

    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    path = write_results(trainer, 1.0, {"val_loss": torch.tensor(float("nan")), "acc": torch.tensor(0.5)})
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))["metrics"] == {
        "acc": 0.5,
        "val_loss": None,
    }


def test_fit_then_tests_and_prints_test_accuracy(tiny_fmnist, tmp_path, capsys, monkeypatch):
    import random

    import numpy as np
    import torch

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    code = main(
        [
            "fit",
            "--config",
            str(RECIPE),
            f"--trainer.default_root_dir={tmp_path / 'run'}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            f"--data.init_args.data_dir={tiny_fmnist.path}",
            "--data.init_args.val_size=10",
            *QUIET,
        ]
    )
    assert code in (0, None)
    assert "test_acc" in capsys.readouterr().out
    # The recipe's seed_everything is undone: an in-process call leaves the process's generators and env alone.
    assert torch.equal(torch.random.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]
    assert "PL_GLOBAL_SEED" not in os.environ and "PL_SEED_WORKERS" not in os.environ
    results = tmp_path / "run" / "results.json"
    if results.exists():  # written by the CLI's after_fit
        assert "test_acc" in json.loads(results.read_text())["metrics"]


def test_bad_data_argument_is_reported_in_one_line(tiny_fmnist, tmp_path, capsys):
    args = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tmp_path}"]
    args += [f"--data.init_args.data_dir={tiny_fmnist.path}", "--data.init_args.task=C", *QUIET]
    assert main(args) == 2
    err = capsys.readouterr().err
    # The choice is a Literal type: jsonargparse refuses it while parsing, reported in the library's wording.
    assert err == (
        "lit-deep: error: --data.init_args.task: must be one of ('full', 'A', 'B'), got 'C'; "
        "see lit-deep <verb> --help (--debug shows the traceback)\n"
    )
    with pytest.raises(argparse.ArgumentError, match=r"Expected a typing.Literal\['full', 'A', 'B'\]. Got value: C"):
        main([*args, "--debug"])


def test_fit_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "optimizer {sgd,momentum,nesterov,adagrad,rmsprop,adam,adamax,nadam,adamw}" in out
    for choices in ("task {full,A,B}", "preset {book,torch,fastai}", "bn {eval,train}", "loss {mse,bce}"):
        assert choices in out
    assert "batch_norm {before,after}" in out and "dropout_kind {standard,alpha,mc,mc_alpha}" in out


def test_a_wrong_choice_in_a_recipe_is_refused(tmp_path, capsys):
    args = ["fit", "--config", str(RECIPE), f"--trainer.default_root_dir={tmp_path}"]
    assert main([*args, "--model.init_args.optimizer=nadamm"]) == 2
    err = capsys.readouterr().err
    assert "--model.init_args.optimizer: must be one of ('sgd', 'momentum'," in err and "got 'nadamm'" in err


@pytest.mark.realdata
def test_baseline_recipe_fast_dev_run_on_real_data(tmp_path, monkeypatch):
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    code = main(
        [
            "fit",
            "--config",
            str(RECIPE),
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    assert code in (0, None)


_LAUGHS = "".join(
    [
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n',
        *(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcde", "bcdef", strict=True)),
        f"model: [{','.join(['*f'] * 9)}]\n",
    ]
)


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    import time

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_LAUGHS)
    assert len(_LAUGHS) < 300
    start = time.perf_counter()
    assert main(["fit", "--config", str(bomb)]) == 2
    assert time.perf_counter() - start < 2
    err = capsys.readouterr().err
    assert err == (
        f"lit-deep: error: --config {bomb}: its aliases expand to more than 100000 YAML nodes; refusing to load it "
        "(--debug shows the traceback)\n"
    )
    inline = (
        "{a: &a [1,1,1,1,1,1,1,1,1,1], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]"
    )
    inline += ", d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]}"
    assert main(["fit", f"--model.init_args.hidden={inline}"]) == 2
    assert "--model.init_args.hidden: its aliases expand to more than 100000 YAML nodes" in capsys.readouterr().err


def test_a_huge_or_recursive_yaml_file_is_refused(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    assert main(["fit", "-c", str(big)]) == 2
    assert f"-c {big}: 2000000 bytes, larger than the 1048576-byte limit" in capsys.readouterr().err
    loop = tmp_path / "loop.yaml"
    loop.write_text("model: &a [1, *a]\n")
    assert main(["fit", "--config", str(loop)]) == 2
    assert "its aliases expand to more than 100000" in capsys.readouterr().err


def test_every_recipe_passes_the_yaml_check():
    from lit_deep.cli import check_yaml_file

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
    assert len(recipes) > 40
    for recipe in recipes:
        check_yaml_file(str(recipe), f"--config {recipe}")


def test_a_class_path_outside_the_allow_list_is_refused_before_its_module_is_imported(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "this", raising=False)
    assert main(["fit", "--model.class_path=this.Foo"]) == 2
    err = capsys.readouterr()
    assert "'this.Foo' is outside the allowed modules" in err.err and "Beautiful is better" not in err.out
    assert "this" not in sys.modules  # its import-time code never ran
    recipe = tmp_path / "hostile.yaml"
    recipe.write_text("model:\n  class_path: this.Foo\n")
    assert main(["fit", "--config", str(recipe)]) == 2
    assert "model.class_path: 'this.Foo'" in capsys.readouterr().err and "this" not in sys.modules
    assert main(["fit", "--trainer.callbacks+=antigravity.Fly"]) == 2  # the same for callbacks
    assert "antigravity" not in sys.modules


def test_every_recipe_passes_the_class_path_check():
    from lit_deep.cli import check_class_paths

    for recipe in sorted((RECIPE.parent).rglob("*.yaml")):
        check_class_paths(["fit", "--config", str(recipe)])
