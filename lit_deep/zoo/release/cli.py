"""The ``lit-deep zoo`` verbs: ``list``, ``info NAME``, ``download NAME``, ``rank``, ``push``, ``export``, ``cards``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HfHubHTTPError

from lit_deep.zoo._hub import SOURCE_ZOO_DIR
from lit_deep.zoo._integrity import ZooIntegrityError
from lit_deep.zoo._transport import ZooDownloadError
from lit_deep.zoo.api import download, info
from lit_deep.zoo.registry import REGISTRY, UnknownModelError, get_entry, list_models

__all__ = ["main", "task_training_split"]


def _list(args: argparse.Namespace) -> int:
    print(f"{'name':<20} {'task':<5} {'repo':<38} test metrics")
    for name in list_models():
        e = REGISTRY[name]
        metrics = ", ".join(f"{k.removeprefix('test_')}={v:.4f}" for k, v in e.metrics.items()) or "-"
        print(f"{name:<20} {e.task:<5} {e.repo_id() + '@' + e.revision[:12]:<38} {metrics}")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(info(args.name), indent=2))
    return 0


def _download(args: argparse.Namespace) -> int:
    fetched = download(args.name, revision=args.revision, cache_dir=args.cache_dir, namespace=args.namespace)
    print(f"{args.name}: {fetched.weights.parent} (source: {fetched.source}, SHA-256 verified)")
    return 0


def task_training_split(
    data_dir: str | None, task: str = "B", train_size: int = 200, val_size: int = 5000
) -> tuple[Any, Any]:
    """Raw uint8 training images and labels of a task, as :class:`~lit_deep.data.FashionMNISTDataModule` splits.

    The training file's first ``val_size`` images are left out (the validation split), then the task's classes
    are kept (task B: sandal 0, shirt 1; task A: the other eight renumbered 0..7) and the first ``train_size``.

    Example::

        >>> task_training_split(None, task="C")
        Traceback (most recent call last):
        ...
        ValueError: task: must be one of ('full', 'A', 'B'), got 'C'
    """
    from lit_deep._validate import check_choice, check_int
    from lit_deep.data import load_fashion_mnist

    check_choice("task", task, ("full", "A", "B"))
    check_int("train_size", train_size, minimum=2)
    images, labels = load_fashion_mnist("train", data_dir)
    images, labels = images[val_size:], labels[val_size:]
    negative, positive = 5, 6  # the DataModule's default b_classes
    if task == "B":
        keep = (labels == negative) | (labels == positive)
        images, labels = images[keep], (labels[keep] == positive).long()
    elif task == "A":
        keep = (labels != negative) & (labels != positive)
        images, labels = images[keep], labels[keep]
        labels = labels - (labels > negative).long() - (labels > positive).long()
    if train_size > labels.shape[0]:
        raise ValueError(f"train_size: {train_size} is larger than the {labels.shape[0]} task-{task} training images")
    return images[:train_size], labels[:train_size]


def _rank(args: argparse.Namespace) -> int:
    import time

    from lit_deep.zoo.transferability import rank

    images, labels = task_training_split(args.data_dir, args.task, args.train_size)
    start = time.perf_counter()
    rows = rank(images, labels, candidates=args.models or None, cuts=args.cuts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(f"{'model':<20} {'cut':<14} {'dim':>6} {'LogME':>8} {'LEEP':>8} {'seconds':>8}")
    for r in rows:
        leep = f"{r.leep:8.4f}" if r.leep is not None else f"{'-':>8}"
        print(f"{r.model:<20} {r.cut:<14} {r.feature_dim:>6} {r.logme:8.4f} {leep} {r.seconds:8.2f}")
    print(f"{len(rows)} candidates on {labels.shape[0]} task-{args.task} training images in {seconds:.1f} s")
    return 0


def _push(args: argparse.Namespace) -> int:
    from lit_deep.zoo.release.push import push

    if (args.name is None) == (args.checkpoint is None):
        raise ValueError("push: give either a registered NAME or --checkpoint PATH (not both)")
    source = args.checkpoint if args.checkpoint is not None else args.name
    oid = push(
        source,
        args.repo_id,
        data_dir=args.data_dir,
        folder=args.folder,
        private=args.private,
        token=args.token,
        commit_message=args.message,
    )
    if args.checkpoint is not None:
        print(f"{args.checkpoint}: uploaded to {args.repo_id} (commit {oid}); load it with zoo.load({args.repo_id!r})")
    else:
        print(f"{args.name}: uploaded to {args.repo_id} (commit {oid}); pin it as the registry entry's revision")
    return 0


def _export(args: argparse.Namespace) -> int:
    from lit_deep.zoo.release.export import pin_line, save_pretrained

    get_entry(args.name)  # export is for registered models (UnknownModelError lists the close names)
    folder = Path(args.out) / args.name
    result = save_pretrained(args.ckpt, folder, name=args.name, data_dir=args.data_dir, device=args.device)
    print(pin_line(args.name, result))
    return 0


def _cards(args: argparse.Namespace) -> int:
    from lit_deep.zoo.release.cards import check_repo_files, write_repo_files

    root = Path(args.out)
    problems: list[str] = []
    for name in list_models():
        if args.measure and (root / name / "model.safetensors").is_file():
            from lit_deep.zoo.release.export import remeasure

            entry, changed = remeasure(name, root / name, args.data_dir, device=args.device)
            print(f"{name}: {entry.metrics} {entry.extra_metrics}")
            problems += changed
        elif args.check:
            problems += check_repo_files(REGISTRY[name], root / name)
        elif (root / name / "model.safetensors").is_file():
            write_repo_files(REGISTRY[name], root / name)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lit-deep zoo", description="The lit_deep model zoo (Hugging Face Hub).")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="List the zoo's models and their test metrics.").set_defaults(func=_list)
    p = sub.add_parser("info", help="Show a model's registry entry.")
    p.add_argument("name")
    p.set_defaults(func=_info)
    p = sub.add_parser("download", help="Download and verify a model's files into the Hub cache.")
    p.add_argument("name")
    p.add_argument("--revision", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--namespace", default=None, help="Hub namespace (default $LIT_DEEP_HUB_NAMESPACE or lit-deep)")
    p.set_defaults(func=_download)
    p = sub.add_parser("rank", help="Rank the zoo's models and cut depths for a task by LogME and LEEP (no training).")
    p.add_argument("--data-dir", "--data", default=None, help="Fashion-MNIST folder (default: the usual search)")
    p.add_argument("--task", default="B", choices=("full", "A", "B"))
    p.add_argument("--train-size", type=int, default=200, help="labelled training images scored (default 200)")
    p.add_argument("--cuts", type=int, default=3, help="cut depths per model: the backbone and earlier ones")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--models", nargs="+", default=None, help="names, repo ids or folders (default: classifiers)")
    p.set_defaults(func=_rank)
    p = sub.add_parser("push", help="Publish a registered zoo/NAME folder or any lit-deep checkpoint on the Hub.")
    p.add_argument("name", nargs="?", default=None, help="a registered zoo name (or use --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint written by lit-deep fit: package, measure, push")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder for the card's test metrics")
    p.add_argument("--repo-id", required=True)
    p.add_argument("--folder", default=None, help="default: zoo/NAME of this checkout")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="default: the token huggingface_hub finds (HF_TOKEN, login)")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=_push)
    p = sub.add_parser("export", help="Write zoo/NAME from a training checkpoint and measure it on the test split.")
    p.add_argument("name")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default=str(SOURCE_ZOO_DIR))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None, help="where to measure the model (e.g. cuda; default cpu)")
    p.set_defaults(func=_export)
    p = sub.add_parser("cards", help="Regenerate config.json and README.md of every zoo folder from the registry.")
    p.add_argument("--out", default=str(SOURCE_ZOO_DIR))
    p.add_argument("--check", action="store_true", help="only report folders out of sync (exit code 1)")
    p.add_argument(
        "--measure",
        action="store_true",
        help="measure every shipped model again on the real test data and rewrite its card.json and card",
    )
    p.add_argument("--data-dir", default=None, help="where the Fashion-MNIST files are (for --measure)")
    p.add_argument("--device", default=None, help="where to run the models for --measure (e.g. cuda; default cpu)")
    p.set_defaults(func=_cards)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lit-deep zoo`` with ``argv``; errors become one message on stderr and exit code 2.

    Example::

        >>> import contextlib, io
        >>> out = io.StringIO()
        >>> with contextlib.redirect_stdout(out):
        ...     code = main(["list"])
        >>> code, "mlp.fmnist" in out.getvalue()
        (0, True)
    """
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except (UnknownModelError, ZooDownloadError, ZooIntegrityError, ValueError, FileNotFoundError) as err:
        print(f"lit-deep zoo {args.verb}: {err}", file=sys.stderr)
        return 2
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        remedy = (
            " Log in (`hf auth login`), set HF_TOKEN or pass --token with write access to the repo's owner."
            if status in (401, 403)
            else ""
        )
        print(f"lit-deep zoo {args.verb}: the Hub refused ({str(err).splitlines()[0]}).{remedy}", file=sys.stderr)
        return 2
