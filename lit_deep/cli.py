"""The ``lit-deep`` command: LightningCLI verbs (fit, validate, test, predict) plus lit_deep's own verbs.

``lit-deep fit --config recipes/baseline.yaml`` trains with ``Classifier`` and ``FashionMNISTDataModule``; any
LightningModule or DataModule can be chosen in the YAML (``class_path``). Extra verbs (``demo``, ``zoo``) are
looked up in :data:`COMMANDS` and imported only when used.

Errors a user can fix (a bad constructor argument, missing data, an unwritable output folder, a missing
checkpoint) print one line naming the argument and the fix, and exit with code 2; a diverged training run prints
one line and exits with code 1. ``--debug`` (or ``LIT_DEEP_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.model_helpers import is_overridden

from lit_deep._cli_choices import choices_help
from lit_deep._io import check_writable, write_json
from lit_deep.data.datamodule import FashionMNISTDataModule
from lit_deep.models import read_checkpoint
from lit_deep.modules import (  # noqa: F401 - AutoencoderModule, Classifier: their short names work in recipes
    AutoencoderModule,
    Classifier,
    DivergenceError,
)
from lit_deep.plugins import AtomicCheckpointIO

__all__ = ["COMMANDS", "LitDeepCLI", "main", "release_process_group", "user_error", "write_results"]

#: verb -> "module:function" taking the remaining arguments and returning an exit code.
COMMANDS: dict[str, str] = {"zoo": "lit_deep.zoo.release.cli:main", "demo": "lit_deep.experiments.demo:main"}
_LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


class LitDeepCLI(LightningCLI):
    """LightningCLI with lit_deep's defaults: the chapter's MLP and data, and a test run after ``fit``.

    ``--test_after_fit true`` (the default) evaluates the trained model on the test split once fitting ends,
    so ``lit-deep fit --config recipes/baseline.yaml`` prints the test accuracy.

    Checkpoints are written atomically (:class:`~lit_deep.plugins.AtomicCheckpointIO`, unless another
    ``CheckpointIO`` plugin is given). A ``ModelCheckpoint`` without a ``dirpath`` writes into
    ``<default_root_dir>/checkpoints`` (not a new logger version folder per run), so that ``--ckpt_path last``
    finds the previous run's ``last.ckpt``; with no such file, ``--ckpt_path last`` is an error, not a silent
    fresh start.
    """

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The Trainer, with :class:`~lit_deep.plugins.AtomicCheckpointIO` unless a ``CheckpointIO`` is given."""
        config = self.config_init.get(self.subcommand, self.config_init) if self.subcommand else self.config_init
        plugins = kwargs.pop("plugins", config.get("trainer", {}).get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        root = Path(trainer.default_root_dir)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(root / "checkpoints")
        return trainer

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--test_after_fit`` and ``--find-lr``; list lit_deep's choice arguments in the help."""
        parser.epilog = choices_help()
        # Keep the epilog's lines (argparse would reflow them into one paragraph); the rest formats as before.
        parser.formatter_class = type(
            "LitDeepHelpFormatter",
            (parser.formatter_class,),
            {"_fill_text": argparse.RawDescriptionHelpFormatter._fill_text},
        )
        parser.add_argument("--test_after_fit", type=bool, default=True, help="Run the test split after fit.")
        parser.add_argument(
            "--find_lr",
            "--find-lr",
            type=bool,
            nargs="?",
            const=True,
            default=False,
            help="Before fit, run the learning-rate range test, save lr_finder.png in the run directory and set "
            "1cycle's max_lr (else the optimizer's lr) to the rate at the lowest loss / 10.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check a ``--ckpt_path`` file before LightningCLI reads its hyper-parameters into the config.

        The checkpoint is data: its model description must name allow-listed classes only and fit its weights, and
        its LightningModule class must be one already imported (see :func:`lit_deep.models.read_checkpoint`).
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand, self.config) if subcommand else self.config
        ckpt_path = config.get("ckpt_path") if hasattr(config, "get") else None
        if isinstance(ckpt_path, str) and Path(ckpt_path).is_file():
            read_checkpoint(ckpt_path)

    def before_fit(self) -> None:
        """Refuse ``--ckpt_path last`` without a last checkpoint; run the LR range test when ``--find-lr`` is set.

        See :func:`lit_deep.callbacks.find_lr` for the range test.
        """
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        check_ckpt_path(config.get("ckpt_path"), self.trainer)
        if config.get("find_lr", False):
            from lit_deep.callbacks.lr_finder import find_lr

            run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            find_lr(self.trainer, self.model, self.datamodule, plot_path=run_dir / "lr_finder.png")

    def after_fit(self) -> None:
        """Test the final model when ``test_after_fit`` is set and a test loader exists."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        fit_seconds = time.perf_counter() - self._fit_started
        fit_metrics = dict(self.trainer.callback_metrics)  # trainer.test replaces them
        testable = is_overridden("test_step", self.model)  # a pretext module has no test split to score
        if (
            config.get("test_after_fit", True)
            and testable
            and not getattr(self.trainer, "fast_dev_run", False)  # set by a connector: invisible to mypy
            and not self.trainer.interrupted
        ):
            self.trainer.test(self.model, datamodule=self.datamodule)
        write_results(self.trainer, fit_seconds, {**fit_metrics, **self.trainer.callback_metrics})

    def before_instantiate_classes(self) -> None:
        """Check that the output folder is writable; start the clock that ``results.json`` reports."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        root = config.get("trainer", {}).get("default_root_dir") or os.getcwd()
        check_writable(root, "--trainer.default_root_dir")
        self._fit_started = time.perf_counter()


def check_ckpt_path(ckpt_path: str | None, trainer: pl.Trainer) -> None:
    """Raise a ``ValueError`` naming ``--ckpt_path`` when the checkpoint to resume from does not exist.

    ``"last"`` needs a ``last*.ckpt`` in a ``ModelCheckpoint``'s folder (Lightning would warn and train from
    scratch, exiting 0); a path must be an existing file (URLs and ``best``/``hpc``/``registry`` are Lightning's).

    Example::

        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir="/nonexistent")
        >>> try:
        ...     check_ckpt_path("last", trainer)
        ... except ValueError as err:
        ...     print(str(err).split(";")[0])
        --ckpt_path last: no last checkpoint in /nonexistent/checkpoints
    """
    if (
        ckpt_path is None
        or ckpt_path in ("best", "hpc")
        or "://" in str(ckpt_path)
        or str(ckpt_path).startswith("registry")
    ):
        return
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise ValueError(f"--ckpt_path: no checkpoint file {ckpt_path}; give an existing .ckpt file or 'last'")
        return
    callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    folders = [Path(c.dirpath or Path(trainer.default_root_dir) / "checkpoints") for c in callbacks]
    found = [
        p
        for c, d in zip(callbacks, folders, strict=True)
        for p in d.glob(f"{c.CHECKPOINT_NAME_LAST}*{c.FILE_EXTENSION}")
    ]
    if found:
        return
    where = ", ".join(str(d) for d in folders) or "any folder (checkpointing is off)"
    saves_last = any(c.save_last for c in callbacks)
    hint = (
        "a run writes it at the end of each epoch; run without --ckpt_path to start a new run"
        if saves_last
        else "no ModelCheckpoint here saves one: add save_last: true to it, or run without --ckpt_path"
    )
    raise ValueError(f"--ckpt_path last: no last checkpoint in {where}; {hint}")


def write_results(trainer: pl.Trainer, fit_seconds: float, metrics: dict[str, Any] | None = None) -> Path | None:
    """Write the run's final metrics, epochs and wall time to ``<default_root_dir>/results.json`` (rank 0).

    ``recipes/run_all.py`` reads these files to build ``recipes/RESULTS.md``. The file is strict JSON (a NaN or
    infinite metric is written as ``null``) and replaced atomically.

    Returns:
        The file written, or ``None`` on other ranks.
    """
    if not trainer.is_global_zero:
        return None
    source = trainer.callback_metrics if metrics is None else metrics
    values = {k: float(v) for k, v in source.items() if torch.is_tensor(v) and v.numel() == 1}
    results = {
        "metrics": values,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "fit_seconds": round(fit_seconds, 1),
        "devices": trainer.num_devices * trainer.num_nodes,
    }
    # Strict JSON (a NaN metric becomes null), written atomically.
    return write_json(Path(trainer.default_root_dir) / "results.json", results, indent=2, sort_keys=True)


def _run_extra(verb: str, argv: list[str]) -> int:
    module_name, _, func_name = COMMANDS[verb].partition(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv) or 0)


# Errors whose message tells the user what to fix: one line and exit code 2 (``--debug`` shows the traceback).
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError)
_DISK_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO}


#: The Python API's words (lit_deep._validate) for the types jsonargparse names.
_TYPE_WORDS = {"int": "an integer", "float": "a number"}


def parse_error_line(message: str) -> str:
    r"""One line from jsonargparse's multi-line parse error: the flag, what it expected and what it got.

    Example::

        >>> parse_error_line(
        ...     'Parser key "data":\n  Does not validate\n    - Problem with given class_path \'X\':\n'
        ...     '        Parser key "batch_size":\n          Expected a <class \'int\'>. Got value: 2.5\n'
        ... )
        '--data.init_args.batch_size: must be an integer, got 2.5'
        >>> parse_error_line(
        ...     'Parser key "data":\n  Does not validate\n    - Problem with given class_path \'X\':\n'
        ...     "        Parser key \"task\":\n          Expected a typing.Literal['full', 'A', 'B']. Got value: C\n"
        ... )
        "--data.init_args.task: must be one of ('full', 'A', 'B'), got 'C'"
    """
    keys = re.findall(r'Parser key "([^"]+)"', message)
    choices = re.search(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)", message)
    if keys and choices:  # a choice argument (a Literal type): the library's own wording for the Python API
        return f"--{'.init_args.'.join(keys)}: must be one of ({choices[1]}), got {choices[2].strip()!r}"
    expected = re.search(r"Expected a <class '([\w.]+)'>\. Got value: (.*)", message)
    if keys and expected:
        flag = "--" + ".init_args.".join(keys)
        what = _TYPE_WORDS.get(expected[1], f"{'an' if expected[1][:1] in 'aeiou' else 'a'} {expected[1]}")
        return f"{flag}: must be {what}, got {expected[2].strip()}"
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def user_error(err: BaseException) -> str | None:
    """The one-line message for an error a user can fix, or ``None`` for anything else (a bug: keep the traceback).

    A wrapped error (LightningCLI wraps a constructor's ``ValueError`` in its own) is reported by its cause.

    Example::

        >>> wrapped = ValueError("Does not validate against any of the Union subtypes")
        >>> wrapped.__cause__ = ValueError("task: must be one of ('full', 'A', 'B'), got 'C'")
        >>> user_error(wrapped)
        "task: must be one of ('full', 'A', 'B'), got 'C'"
        >>> user_error(KeyError("x")) is None
        True
    """
    root = err
    while not _disk_error(root) and (isinstance(root.__cause__, _USER_ERRORS) or _disk_error(root.__cause__)):
        assert root.__cause__ is not None
        root = root.__cause__
    if isinstance(root, DivergenceError):
        return str(root)
    if isinstance(root, argparse.ArgumentError):  # a command-line parse error (the parser does not exit itself)
        return f"{parse_error_line(str(root)).rstrip('.')}; see lit-deep <verb> --help"
    if _disk_error(root):
        assert isinstance(root, OSError)
        target = root.filename or "a file"
        return (
            f"cannot write {target}: {root.strerror}; choose a writable output folder "
            "(--trainer.default_root_dir, a checkpoint's dirpath, --output) with free space"
        )
    if isinstance(root, _USER_ERRORS):
        return " ".join(str(root).split("\n")).strip() or type(root).__name__
    return None


def _disk_error(err: BaseException | None) -> bool:
    return isinstance(err, OSError) and err.errno in _DISK_ERRNOS and not isinstance(err, FileNotFoundError)


#: The largest YAML file ``lit-deep`` reads (a recipe is a few KB).
MAX_YAML_BYTES = 1 << 20

#: The most YAML nodes a file or value may expand to, counting each alias as a copy of what it names: a
#: 236-byte "billion laughs" file (nested ``&a [*b, *b, ...]`` anchors) otherwise costs jsonargparse 48 s and
#: 731 MB. The largest recipe has a few hundred nodes.
MAX_YAML_NODES = 100_000


def _expanded_nodes(root: Any, limit: int) -> int:
    """Nodes of a composed YAML document with every alias expanded, counting stopped just past ``limit``."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:  # a recursive anchor expands forever
            return limit + 1
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def check_yaml_text(text: str, source: str) -> None:
    r"""Refuse YAML whose aliases expand past :data:`MAX_YAML_NODES` nodes, before jsonargparse loads it.

    Args:
        text: the YAML.
        source: what it is, for the message (``--config bomb.yaml``).

    Raises:
        ValueError: one line naming ``source``.

    Example::

        >>> laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        ...     f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef")
        ... )
        >>> try:
        ...     check_yaml_text(laughs, "--config bomb.yaml")
        ... except ValueError as err:
        ...     print(err)
        --config bomb.yaml: its aliases expand to more than 100000 YAML nodes; refusing to load it
        >>> check_yaml_text("model:\n  hidden: [300, 100]\n", "--config ok.yaml")
    """
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    total = 0
    try:
        loader = loader_class(text)
        try:
            while loader.check_node():
                total += _expanded_nodes(loader.get_node(), MAX_YAML_NODES - total)
                if total > MAX_YAML_NODES:
                    break
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return  # not YAML: jsonargparse reports it
    except RecursionError:
        raise ValueError(f"{source}: nested too deeply; refusing to load it") from None
    if total > MAX_YAML_NODES:
        raise ValueError(f"{source}: its aliases expand to more than {MAX_YAML_NODES} YAML nodes; refusing to load it")


def check_yaml_file(path: str, source: str) -> None:
    """:func:`check_yaml_text` for a file, also refused when larger than :data:`MAX_YAML_BYTES`.

    Example::

        >>> check_yaml_file("recipes/baseline.yaml", "--config recipes/baseline.yaml")
    """
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # missing: jsonargparse names it
    if size > MAX_YAML_BYTES:
        raise ValueError(f"{source}: {size} bytes, larger than the {MAX_YAML_BYTES}-byte limit for a YAML file")
    with open(path, "rb") as handle:
        text = handle.read(MAX_YAML_BYTES + 1).decode("utf-8", errors="replace")
    check_yaml_text(text, source)


def _option_values(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(option, value)`` of each ``--option=value`` or ``--option value`` in ``args`` (verbs and flags skipped)."""
    option: str | None = None
    for arg in args:
        if arg.startswith("-"):
            if "=" not in arg:
                option = arg  # its value, if any, is the next argument
                continue
            option, value = arg.split("=", 1)
        elif option is None:
            continue  # a verb
        else:
            value = arg
        yield option, value
        option = None


def check_yaml_args(args: Sequence[str]) -> None:
    """Check the YAML in ``args`` before jsonargparse parses any of it.

    That is every ``--config`` file, every other value naming a ``.yaml``/``.yml``/``.json`` file, and every
    inline value with a YAML alias (``*``); any value is refused above :data:`MAX_YAML_BYTES`.

    Raises:
        ValueError: one line naming the argument (and the file).

    Example::

        >>> check_yaml_args(["fit", "--config", "recipes/baseline.yaml", "--trainer.max_epochs=1"])
        >>> try:
        ...     check_yaml_args(["fit", "--model.init_args.hidden=" + "a" * 2_000_000])
        ... except ValueError as err:
        ...     print(str(err)[:60])
        --model.init_args.hidden: 2000000 bytes, larger than the 104
    """
    for option, value in _option_values(args):
        is_file = value.lower().endswith((".yaml", ".yml", ".json")) and os.path.isfile(value)
        if option in ("--config", "-c") or is_file:
            check_yaml_file(value, f"{option} {value}")
        elif len(value) > MAX_YAML_BYTES:
            raise ValueError(f"{option}: {len(value)} bytes, larger than the {MAX_YAML_BYTES}-byte limit")
        elif "*" in value:  # only an alias can expand
            check_yaml_text(value, option)


#: Module prefixes a class path on the command line or in a recipe may name (checked before anything is imported);
#: ``$LIT_DEEP_ALLOW_IMPORTS`` (comma-separated module prefixes) adds a user's own packages.
ALLOWED_MODULES = ("lit_deep", "lightning", "pytorch_lightning", "torch", "torchmetrics")
_CLASS_KEYS = {"model", "data", "callbacks", "logger", "plugins", "optimizer", "lr_scheduler", "schedule"}
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _allowed_path(path: str) -> bool:
    extra = [m.strip() for m in os.environ.get("LIT_DEEP_ALLOW_IMPORTS", "").split(",") if m.strip()]
    top = path.split(".")[0]
    return top in ALLOWED_MODULES or any(path == m or path.startswith(m + ".") for m in extra)


def _class_paths(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(where, class path)`` of every ``class_path`` entry in a parsed recipe."""
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if key == "class_path" and isinstance(item, str):
                yield inner, item
            else:
                yield from _class_paths(item, inner)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _class_paths(item, f"{where}[{i}]")


def check_class_paths(args: Sequence[str]) -> None:
    """Refuse a class path outside :data:`ALLOWED_MODULES` before jsonargparse imports its module.

    jsonargparse imports the module a ``class_path`` names to find the class, so ``--model.class_path=this.Foo``
    would run ``this``'s import-time code before any check. The paths of the command line (``--x.class_path``,
    ``--model``, ``--data``, ``--trainer.callbacks+=``, ...) and of every ``--config`` recipe are checked first;
    short names (``Classifier``) are resolved by jsonargparse among classes already imported.

    Raises:
        ValueError: one line naming the argument (or the recipe entry) and the path.

    Example::

        >>> check_class_paths(["fit", "--model=lit_deep.Classifier", "--ckpt_path=last.ckpt"])
        >>> try:
        ...     check_class_paths(["fit", "--model.class_path=this.Foo"])
        ... except ValueError as err:
        ...     print(str(err).split(" (")[0])
        --model.class_path: 'this.Foo' is outside the allowed modules
    """
    import yaml

    found: list[tuple[str, str]] = []
    for option, value in _option_values(args):
        key = option.lstrip("-").rstrip("+")
        if option in ("--config", "-c") and os.path.isfile(value):
            with open(value, encoding="utf-8") as handle:  # checked by check_yaml_args first: bounded
                found += [
                    (f"{option} {value}: {where}", path) for where, path in _class_paths(yaml.safe_load(handle), "")
                ]
        elif (key.endswith("class_path") or key.split(".")[-1] in _CLASS_KEYS) and _DOTTED.match(value):
            found.append((option, value))
    for where, path in found:
        if "." in path and not _allowed_path(path):
            raise ValueError(
                f"{where}: {path!r} is outside the allowed modules ({', '.join(ALLOWED_MODULES)}); nothing was "
                "imported. Add your package to $LIT_DEEP_ALLOW_IMPORTS (comma-separated) to use it"
            )


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get("LIT_DEEP_DEBUG", "").strip() not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    r"""Run ``lit-deep`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for an error the user can fix (one line on stderr), 1 when training diverged.

    Example::

        >>> import contextlib, io
        >>> out = io.StringIO()
        >>> with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        ...     main(["--help"])
        >>> "fit" in out.getvalue()
        True
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     code = main(["demo", "--epochs", "0"])
        >>> code, err.getvalue()
        (2, 'lit-deep: error: --epochs: must be at least 1, got 0 (--debug shows the traceback)\n')
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    args = [a for a in args if a != "--debug"]  # DDP's launcher re-runs sys.argv: every rank strips it too
    group_was_up = _group_is_up()  # a caller's own process group is the caller's to end
    with _process_state_kept():
        return _main(args, debug, group_was_up)


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Run ``lit-deep`` in-process without leaving global state behind.

    The seed Lightning sets (torch's, NumPy's and Python's generators, ``PL_GLOBAL_SEED``/``PL_SEED_WORKERS``) is
    undone when the command returns, and the ``lit_deep`` loggers print to stderr only while it runs (unless the
    application configured logging itself).
    """
    import random

    import numpy as np

    states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    logger = logging.getLogger("lit_deep")
    handler = None
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        level, logger.level = logger.level, logging.INFO
    try:
        yield
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)


def _main(args: list[str], debug: bool, group_was_up: bool) -> int:
    try:
        return _run(args)
    except (Exception, KeyboardInterrupt) as err:
        message = None if debug else user_error(err)
        if message is None:
            raise
        print(f"lit-deep: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 1 if isinstance(err, DivergenceError) else 2
    finally:
        if not group_was_up:
            release_process_group()


def _run(args: list[str]) -> int:
    if args and args[0] in COMMANDS:
        return _run_extra(args[0], args[1:])
    check_yaml_args(args)  # before jsonargparse expands a YAML alias bomb
    check_class_paths(args)  # before jsonargparse imports the module a class path names
    if args and args[0] in ("-h", "--help") and COMMANDS:
        print(f"lit-deep verbs: {', '.join([*_LIGHTNING_VERBS, *COMMANDS])} (each has its own --help)")
    with warnings.catch_warnings():
        # LightningCLI warns whenever ``args`` is given and sys.argv has arguments, which is every console call:
        # here ``args`` *is* sys.argv[1:] (minus --debug).
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
        LitDeepCLI(
            pl.LightningModule,  # Classifier, AutoencoderModule or any LightningModule, chosen by class_path
            FashionMNISTDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            save_config_kwargs={"overwrite": True},
            # exit_on_error=False: a parse error is raised, and main() reports it in one line, not usage + tree.
            parser_kwargs={"description": "Train deep networks the book's way (lit_deep).", "exit_on_error": False},
            auto_configure_optimizers=False,
        )
    return 0


def _group_is_up() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def release_process_group() -> None:
    """Destroy the ``torch.distributed`` process group, if one is up (no-op otherwise).

    Lightning leaves the group of a DDP run alive until the interpreter exits, where tearing down gloo's
    threads occasionally aborts the process ("terminate called without an active exception") after a
    successful run. Ending it explicitly once the work is done avoids that.

    Example::

        >>> import torch.distributed as dist
        >>> release_process_group()  # nothing to release in a single process
        >>> dist.is_initialized()
        False
    """
    import torch.distributed as dist

    if _group_is_up():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
