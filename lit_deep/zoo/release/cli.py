"""``lit-deep zoo list | info NAME | download NAME | push (NAME | --checkpoint PATH) --repo-id ID | export | cards``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub.errors import HfHubHTTPError

from lit_deep.zoo._hub import SOURCE_ZOO_DIR
from lit_deep.zoo._integrity import ZooIntegrityError
from lit_deep.zoo._transport import ZooDownloadError
from lit_deep.zoo.api import download, info
from lit_deep.zoo.registry import REGISTRY, UnknownModelError, get_entry, list_models

__all__ = ["main"]


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
    from lit_deep.zoo.release.export import registry_snippet, save_pretrained

    get_entry(args.name)  # export is for registered models (UnknownModelError lists the close names)
    result = save_pretrained(args.ckpt, Path(args.out) / args.name, name=args.name, data_dir=args.data_dir)
    print(registry_snippet(args.name, result))
    return 0


def _cards(args: argparse.Namespace) -> int:
    from lit_deep.zoo.release.cards import check_repo_files, write_repo_files

    root = Path(args.out)
    problems: list[str] = []
    for name in list_models():
        if args.check:
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
    p.set_defaults(func=_export)
    p = sub.add_parser("cards", help="Regenerate config.json and README.md of every zoo folder from the registry.")
    p.add_argument("--out", default=str(SOURCE_ZOO_DIR))
    p.add_argument("--check", action="store_true", help="only report folders out of sync (exit code 1)")
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
