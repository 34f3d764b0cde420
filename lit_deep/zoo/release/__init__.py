"""The zoo's release tooling (Lightning, data, metrics): export checkpoints, generate cards, measure, publish.

The runtime (:mod:`lit_deep.zoo`) never imports this package.
"""

from lit_deep.zoo.release.export import ExportResult, save_pretrained
from lit_deep.zoo.release.push import push

__all__ = ["ExportResult", "push", "save_pretrained"]
