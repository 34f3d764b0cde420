"""``lit-deep zoo list | info NAME | download NAME | push NAME --repo-id ID | export NAME --ckpt PATH | cards``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi

from lit_deep.zoo._hub import ZooDownloadError, ZooIntegrityError, shipped_copy
from lit_deep.zoo.api import download, info
from lit_deep.zoo.cards import check_repo_files, write_repo_files
from lit_deep.zoo.registry import REGISTRY, UnknownModelError, get_entry, list_models

__all__ = ["main", "push"]

#: The zoo folder of a source checkout (``zoo/`` at the repository root).
ZOO_DIR = Path(__file__).resolve().parents[2] / "zoo"


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


def push(
    name: str,
    repo_id: str,
    folder: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the Hub repo ``repo_id`` (if needed) and upload ``zoo/<name>/`` to it with ``HfApi``.

    The folder must be in sync with the registry (same SHA-256, generated card and config) first.

    Returns:
        The commit id of the upload (pin it as the entry's ``revision``).

    Raises:
        ValueError: for an unknown name, a bad ``repo_id`` or a folder out of sync with the registry.

    Example::

        >>> push("mlp.fmnist", repo_id="no-namespace")
        Traceback (most recent call last):
        ...
        ValueError: repo_id: expected 'namespace/name', got 'no-namespace'
    """
    entry = get_entry(name)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id: expected 'namespace/name', got {repo_id!r}")
    path = Path(folder) if folder is not None else ZOO_DIR / name
    if folder is None and not path.is_dir():
        path = shipped_copy(name) or path  # an installed package: the copy it ships
    problems = check_repo_files(entry, path)
    if problems:
        raise ValueError("folder: not in sync with the registry: " + "; ".join(problems))
    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(path),
        allow_patterns=["config.json", "model.safetensors", "README.md"],
        commit_message=commit_message or f"Upload {name} (lit_deep zoo, SHA-256 {entry.sha256[:12]})",
    )
    return str(getattr(commit, "oid", commit))


def _push(args: argparse.Namespace) -> int:
    oid = push(args.name, args.repo_id, args.folder, args.private, args.token, args.message)
    print(f"{args.name}: uploaded to {args.repo_id} (commit {oid}); pin it as the registry entry's revision")
    return 0


def _export(args: argparse.Namespace) -> int:
    from lit_deep.zoo.export import export_checkpoint, registry_snippet

    result = export_checkpoint(args.name, args.ckpt, Path(args.out) / args.name, data_dir=args.data_dir)
    print(registry_snippet(args.name, result))
    return 0


def _cards(args: argparse.Namespace) -> int:
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
    p = sub.add_parser("push", help="Create a Hub repo and upload zoo/NAME to it.")
    p.add_argument("name")
    p.add_argument("--repo-id", required=True)
    p.add_argument("--folder", default=None, help="default: zoo/NAME of this checkout")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="default: the token huggingface_hub finds (HF_TOKEN, login)")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=_push)
    p = sub.add_parser("export", help="Write zoo/NAME from a training checkpoint and measure it on the test split.")
    p.add_argument("name")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default=str(ZOO_DIR))
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_export)
    p = sub.add_parser("cards", help="Regenerate config.json and README.md of every zoo folder from the registry.")
    p.add_argument("--out", default=str(ZOO_DIR))
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
