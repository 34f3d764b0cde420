"""The model zoo: pretrained Fashion-MNIST models published as Hugging Face Hub repos.

Runtime (this package's top level; imports neither Lightning nor matplotlib): ``list_models()`` names the
registered models; ``load(name_or_repo, num_classes=None, revision=None, cache_dir=None)`` downloads a registered
model or any Hub repo in the lit_deep format through ``huggingface_hub``, verifies it, rebuilds it from
``config.json`` (allow-listed classes only) and returns a plain ``nn.Module`` (eval mode, preprocessing attached);
``classifier(...)`` wraps it in a :class:`~lit_deep.Classifier` ready to fine-tune. ``Pretrained`` is the
transfer-learning form for YAML recipes. ``rank(images, labels)`` scores every model and cut depth for a
labelled task before any training (LogME, LEEP: :mod:`lit_deep.zoo.transferability`). Release tooling (export,
cards, evaluation, push) lives in :mod:`lit_deep.zoo.release`, which this package never imports.
"""

from lit_deep.zoo._integrity import ZooIntegrityError
from lit_deep.zoo._transport import ZooDownloadError
from lit_deep.zoo.api import classifier, download, info, load
from lit_deep.zoo.pretrained import Pretrained
from lit_deep.zoo.registry import REGISTRY, UnknownModelError, list_models
from lit_deep.zoo.transferability import rank

__all__ = [
    "REGISTRY",
    "Pretrained",
    "UnknownModelError",
    "ZooDownloadError",
    "ZooIntegrityError",
    "classifier",
    "download",
    "info",
    "list_models",
    "load",
    "rank",
]
