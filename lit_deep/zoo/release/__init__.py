"""The zoo's release tooling (Lightning, data, metrics): export checkpoints, generate cards, measure, publish.

The runtime (:mod:`lit_deep.zoo`) never imports this package.
"""

from lit_deep.zoo.release.cards import card_text, check_repo_files, config_dict, config_text, write_repo_files
from lit_deep.zoo.release.evaluate import classification_metrics, evaluate, load_test_split
from lit_deep.zoo.release.export import (
    ExportResult,
    export_checkpoint,
    package_checkpoint,
    package_module,
    registry_snippet,
    write_package,
)
from lit_deep.zoo.release.push import check_repo_id, push, push_checkpoint, push_folder, push_registered

__all__ = [
    "ExportResult",
    "card_text",
    "check_repo_files",
    "check_repo_id",
    "classification_metrics",
    "config_dict",
    "config_text",
    "evaluate",
    "export_checkpoint",
    "load_test_split",
    "package_checkpoint",
    "package_module",
    "push_checkpoint",
    "push_folder",
    "push",
    "push_registered",
    "registry_snippet",
    "write_package",
    "write_repo_files",
]
