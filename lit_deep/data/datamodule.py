"""The Fashion-MNIST LightningDataModule: the book's split, scaling, standardisation and transfer tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lit_deep._validate import check_bool, check_choice, check_int, check_path
from lit_deep.data._batches import DistributedBatchSampler, ResumableLoader, TensorBatches
from lit_deep.data.augment import RandomShiftFlip
from lit_deep.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

__all__ = ["TASKS", "FashionMNISTDataModule", "Task"]

#: The tasks: all ten classes, the book's task A (eight classes) and task B (sandal vs shirt).
Task = Literal["full", "A", "B"]
TASKS: tuple[str, ...] = get_args(Task)
_TRAIN_SIZE = 60_000
# Near-constant border pixels have a per-pixel std of ~4e-4; dividing by it would turn one grey level into
# thousands of standard deviations. The std is floored at one grey level (1/255).
_STD_FLOOR = 1.0 / 255.0


class FashionMNISTDataModule(pl.LightningDataModule):
    """Fashion-MNIST as the book splits it, with the transfer-learning tasks A and B.

    The training file's first ``val_size`` images are the validation split (as in the book), the rest the
    training split; the test file is the test split. Pixels are scaled to [0, 1]; with ``standardize=True``
    each pixel is then standardised with the per-pixel mean and std of the 55,000-image training split of all
    ten classes (what SELU nets need; the same statistics for every task, so a model trained on task A sees
    task-B images normalised exactly as its own), the std floored at 1/255.

    Tasks:
        * ``"full"``: all ten classes.
        * ``"A"``: every class except ``b_classes``, labels renumbered 0..7 in the original order.
        * ``"B"``: only ``b_classes``; ``y = 1`` for ``b_classes[1]`` (shirt), ``0`` for ``b_classes[0]``
          (sandal); the training split keeps its first ``b_train_size`` images.

    Batches are ``x`` float32 ``[B, 1, 28, 28]`` and ``y`` int64 ``[B]``, sliced from in-memory tensors.
    Validation and test batches keep the files' order; training batches are reshuffled every epoch with
    ``seed + epoch``. Under DDP every rank takes its own shard; evaluation shards are unpadded, so
    validation and test metrics count every image exactly once.

    Resuming is exact: checkpoints hold the training loader's position (Lightning's stateful-dataloader
    protocol, and the DataModule's own state as a fallback), the augmentation's generator and the process's
    random generators (torch, NumPy, ``random``), restored when Lightning restores the DataModule; so a run
    stopped at an epoch boundary or in the middle of an epoch and resumed with ``ckpt_path`` draws the same
    batches and dropout masks as an uninterrupted run.

    Args:
        data_dir: a folder with the four IDX files (see :func:`~lit_deep.data.load_fashion_mnist`).
        task: ``"full"``, ``"A"`` or ``"B"``.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        standardize: standardise pixels with the training split's per-pixel statistics.
        val_size: number of leading training-file images used for validation.
        b_classes: the two classes of task B, ``(negative, positive)``; the book's newer edition uses ``(0, 2)``
            (T-shirt/top vs pullover).
        b_train_size: training images kept for task B.
        seed: base seed of the training shuffle.
        eval_batch_size: batch size for validation, test and predict.
        augment: augment training batches with random shifts (up to ``max_shift`` pixels) and horizontal
            flips (:class:`~lit_deep.data.augment.RandomShiftFlip`, seeded by ``seed``). Not in the book's
            chapter; used by the zoo's CNN and best MLP.
        max_shift: largest shift of the augmentation, in pixels.
        train_size: keep only the first ``train_size`` training images of tasks ``full`` and ``A`` (few-label
            experiments such as unsupervised pretraining); task B uses ``b_train_size``.
        on_device: keep the three splits on the trainer's device (``trainer.strategy.root_device``, each DDP
            rank its own) once set up, so batches are gathered and augmented there and nothing crosses the bus
            per step; the whole dataset is 0.2 GB as float32. Without a trainer (``setup`` called by hand) the
            splits stay on the CPU. The batches and augmentations are the same on every device (the shuffle and
            augmentation draws come from CPU generators).

    Example::

        >>> import tempfile, torch
        >>> from lit_deep.data import write_idx
        >>> folder = tempfile.mkdtemp()
        >>> for split, n in (("train", 60), ("t10k", 20)):
        ...     write_idx(f"{folder}/{split}-images-idx3-ubyte.gz", torch.zeros(n, 28, 28, dtype=torch.uint8))
        ...     write_idx(f"{folder}/{split}-labels-idx1-ubyte.gz", (torch.arange(n) % 10).to(torch.uint8))
        >>> dm = FashionMNISTDataModule(folder, task="B", val_size=10, b_train_size=4, batch_size=2)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.val_dataloader()))
        >>> tuple(x.shape), y.tolist(), len(dm.train_set)
        ((2, 1, 28, 28), [0, 1], 4)
    """

    def __init__(
        self,
        data_dir: str | None = None,
        task: Task = "full",
        batch_size: int = 32,
        standardize: bool = False,
        val_size: int = 5000,
        b_classes: Sequence[int] = (5, 6),
        b_train_size: int = 200,
        seed: int = 42,
        eval_batch_size: int = 1000,
        augment: bool = False,
        max_shift: int = 2,
        train_size: int | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        check_path("data_dir", data_dir, optional=True)
        check_choice("task", task, TASKS)
        if isinstance(b_classes, (str, bytes)) or not isinstance(b_classes, Sequence):
            raise ValueError(f"b_classes: expected two class indices in 0..9, got {b_classes!r}")
        b_classes = tuple(b_classes)
        valid = all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(CLASS_NAMES) for c in b_classes)
        if len(b_classes) != 2 or not valid:
            raise ValueError(f"b_classes: expected two class indices in 0..9, got {b_classes!r}")
        if b_classes[0] == b_classes[1]:
            raise ValueError(f"b_classes: the two classes overlap, got {b_classes!r}")
        check_int("batch_size", batch_size, minimum=1)
        check_int("eval_batch_size", eval_batch_size, minimum=1)
        check_int("val_size", val_size, 1, _TRAIN_SIZE - 1)
        check_int("train_size", train_size, minimum=1, optional=True)
        check_int("b_train_size", b_train_size, minimum=1)
        check_int("max_shift", max_shift, minimum=0)
        check_int("seed", seed, minimum=0)
        check_bool("standardize", standardize)
        check_bool("augment", augment)
        check_bool("on_device", on_device)
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.task = task
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.standardize = standardize
        self.val_size = val_size
        self.b_classes: tuple[int, int] = b_classes
        self.b_train_size = b_train_size
        self.train_size = train_size
        self.seed = seed
        self.augment = augment
        self.max_shift = max_shift
        self.on_device = on_device
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.train_set: TensorBatches | None = None
        self.val_set: TensorBatches | None = None
        self.test_set: TensorBatches | None = None
        self._train_sampler: DistributedBatchSampler | None = None
        self._pending_order: dict[str, Any] | None = None  # a checkpoint's training position, for the next loader
        self._augment_state: torch.Tensor | None = None  # a checkpoint's augmentation generator, for setup()

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the task's classes, in label order."""
        if self.task == "full":
            return CLASS_NAMES
        if self.task == "A":
            return tuple(n for i, n in enumerate(CLASS_NAMES) if i not in self.b_classes)
        return tuple(CLASS_NAMES[c] for c in self.b_classes)

    @property
    def num_classes(self) -> int:
        """The number of classes of the task (10, 8 or 2)."""
        return len(self.class_names)

    def prepare_data(self) -> None:
        """Locate (or download, once, on rank 0) the data files."""
        load_fashion_mnist("train", self.data_dir)
        load_fashion_mnist("test", self.data_dir)

    def _select(self, images: torch.Tensor, labels: torch.Tensor, limit: int | None = None) -> TensorBatches:
        if self.task == "A":
            keep = (labels != self.b_classes[0]) & (labels != self.b_classes[1])
            images, labels = images[keep], labels[keep]
            # Renumber 0..7 keeping the original order: subtract the number of removed classes below each label.
            labels = labels - (labels > self.b_classes[0]).long() - (labels > self.b_classes[1]).long()
        elif self.task == "B":
            keep = (labels == self.b_classes[0]) | (labels == self.b_classes[1])
            images, labels = images[keep], (labels[keep] == self.b_classes[1]).long()
            if limit is not None:
                if limit > labels.shape[0]:
                    raise ValueError(
                        f"b_train_size: {limit} is larger than the {labels.shape[0]} task-B training images available"
                    )
                images, labels = images[:limit], labels[:limit]
        x = images.unsqueeze(1).float().div_(255.0)
        if self.standardize:
            assert self.mean is not None
            assert self.std is not None
            x.sub_(self.mean).div_(self.std)
        return TensorBatches(x, labels)

    def setup(self, stage: str | None = None) -> None:
        """Load the files and build the splits of the task (all three, whatever the stage)."""
        if self.train_set is not None:
            return
        images, labels = load_fashion_mnist("train", self.data_dir)
        if self.val_size >= images.shape[0]:
            raise ValueError(f"val_size: {self.val_size} leaves no training images out of {images.shape[0]}")
        train_images, train_labels = images[self.val_size :], labels[self.val_size :]
        if self.standardize:
            pixels = train_images.unsqueeze(1).float().div_(255.0)
            self.mean = pixels.mean(dim=0)
            self.std = pixels.std(dim=0).clamp_min(_STD_FLOOR)
        self.train_set = self._select(train_images, train_labels, limit=self.b_train_size)
        if self.train_size is not None and self.task != "B":
            if self.train_size > len(self.train_set):
                raise ValueError(
                    f"train_size: {self.train_size} is larger than the {len(self.train_set)} training images"
                )
            self.train_set.inputs = self.train_set.inputs[: self.train_size]
            self.train_set.targets = self.train_set.targets[: self.train_size]
        if self.augment:
            transform = RandomShiftFlip(self.max_shift, 0.5, self.seed)
            if self.standardize:
                assert self.mean is not None
                assert self.std is not None
                transform.fill = (-self.mean / self.std).unsqueeze(0)  # a black pixel, standardised
            if self._augment_state is not None:
                transform.generator.set_state(self._augment_state)
            self.train_set.transform = transform
        self.val_set = self._select(images[: self.val_size], labels[: self.val_size])
        test_images, test_labels = load_fashion_mnist("test", self.data_dir)
        self.test_set = self._select(test_images, test_labels)
        trainer = self.trainer if self.on_device else None  # LightningDataModule.trainer: None until attached
        if trainer is not None:
            device = trainer.strategy.root_device
            for split in (self.train_set, self.val_set, self.test_set):
                split.inputs, split.targets = split.inputs.to(device), split.targets.to(device)

    def _loader(self, data: TensorBatches | None, train: bool) -> DataLoader:
        if data is None:
            raise RuntimeError("FashionMNISTDataModule: call setup() before asking for a dataloader")
        sampler = DistributedBatchSampler(
            len(data),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            even_shards=train,
        )
        if not train:  # evaluation loaders stay plain: Lightning re-creates them to wrap their sampler
            return DataLoader(data, sampler=sampler, batch_size=None, num_workers=0, generator=torch.Generator())
        if self._pending_order is not None:
            sampler.load_state_dict(self._pending_order)
            self._pending_order = None
        self._train_sampler = sampler
        return ResumableLoader(data, sampler)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (this rank's shard)."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order (this rank's contiguous shard)."""
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order (this rank's contiguous shard)."""
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split in file order, for prediction."""
        return self._loader(self.test_set, train=False)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume exactly.

        The standardisation statistics, the training loader's position and the augmentation's generator, all
        plain tensors and numbers. The process's generators are not the data's: lit_deep's LightningModules
        save them (per rank), and nothing here touches them.
        """
        state: dict[str, Any] = {"mean": self.mean, "std": self.std}
        if self._train_sampler is not None:
            state["train_order"] = self._train_sampler.state_dict()
        transform = self.train_set.transform if self.train_set is not None else None
        if isinstance(transform, RandomShiftFlip):
            state["augment"] = transform.generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (Lightning calls this before training resumes).

        The training position is handed to the next training loader (and Lightning hands its own copy to that
        loader again, which gives the same position); the process-wide generators are left alone.
        """
        self.mean = state_dict.get("mean")
        self.std = state_dict.get("std")
        self._pending_order = state_dict.get("train_order")
        if self._train_sampler is not None and self._pending_order is not None:
            self._train_sampler.load_state_dict(self._pending_order)
        augment = state_dict.get("augment")
        if augment is not None:
            self._augment_state = augment
            transform = self.train_set.transform if self.train_set is not None else None
            if isinstance(transform, RandomShiftFlip):
                transform.generator.set_state(augment)
