import pytest
import torch

from lit_deep.data import CLASS_NAMES, FashionMNISTDataModule, load_fashion_mnist, write_idx
from tests.conftest import REAL_DIR, run_ddp_script

# Task A's renumbering for the default b_classes (5, 6), written out by hand.
TASK_A_LABELS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 7: 5, 8: 6, 9: 7}


def _concat(loader):
    xs, ys = zip(*list(loader), strict=True)
    return torch.cat(xs), torch.cat(ys)


def _scaled(images):
    return images.unsqueeze(1).float() / 255


def _dm(fake, **kwargs):
    kwargs = {"val_size": 10, "batch_size": 8, "eval_batch_size": 4, **kwargs}
    dm = FashionMNISTDataModule(str(fake.path), **kwargs)
    dm.setup("fit")
    return dm


def test_splits_keep_file_order(tiny_fmnist):
    dm = _dm(tiny_fmnist)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50, 10, 20)
    x, y = _concat(dm.val_dataloader())
    assert torch.equal(x, _scaled(tiny_fmnist.train_images[:10]))
    assert torch.equal(y, tiny_fmnist.train_labels[:10])
    for loader in (dm.test_dataloader(), dm.predict_dataloader()):
        x, y = _concat(loader)
        assert torch.equal(x, _scaled(tiny_fmnist.test_images))
        assert torch.equal(y, tiny_fmnist.test_labels)


def test_batch_dtypes_and_shapes(tiny_fmnist):
    dm = _dm(tiny_fmnist)
    for loader, size in ((dm.train_dataloader(), 8), (dm.val_dataloader(), 4), (dm.test_dataloader(), 4)):
        x, y = next(iter(loader))
        assert x.dtype == torch.float32
        assert x.shape == (size, 1, 28, 28)
        assert y.dtype == torch.int64
        assert y.shape == (size,)
        assert x.min() >= 0.0
        assert x.max() <= 1.0
    assert [len(b[1]) for b in dm.train_dataloader()] == [8] * 6 + [2]
    # Whole batches come from one gather on the in-memory tensors: no per-item collate.
    assert dm.train_dataloader().batch_size is None
    assert isinstance(next(iter(dm.val_dataloader().sampler)), slice)


def _train_order(dm, epoch):
    """The training indices of an epoch, recovered from the images (random, hence unique)."""
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    x, y = _concat(loader)
    rows = {bytes(img.numpy()): i for i, img in enumerate(dm.train_set.inputs)}
    order = [rows[bytes(img.numpy())] for img in x]
    assert torch.equal(y, dm.train_set.targets[order])
    return order


def test_training_batches_are_shuffled_per_epoch_and_reproducible(tiny_fmnist):
    dm = _dm(tiny_fmnist)
    epoch0, epoch1 = _train_order(dm, 0), _train_order(dm, 1)
    for order in (epoch0, epoch1):
        assert sorted(order) == list(range(50))  # every training image exactly once
        assert order != list(range(50))
    assert epoch0 != epoch1
    assert _train_order(_dm(tiny_fmnist), 1) == epoch1
    assert _train_order(_dm(tiny_fmnist, seed=7), 1) != epoch1


def test_task_a_renumbers_in_original_order(tiny_fmnist):
    dm = _dm(tiny_fmnist, task="A")
    assert dm.num_classes == 8
    assert dm.class_names == tuple(n for n in CLASS_NAMES if n not in ("Sandal", "Shirt"))
    keep = [i for i in range(10) if int(tiny_fmnist.train_labels[i]) in TASK_A_LABELS]
    x, y = _concat(dm.val_dataloader())
    assert torch.equal(x, _scaled(tiny_fmnist.train_images[keep]))
    assert y.tolist() == [TASK_A_LABELS[int(tiny_fmnist.train_labels[i])] for i in keep]
    assert sorted(dm.train_set.targets.unique().tolist()) == list(range(8))
    assert len(dm.train_set) == 40
    assert len(dm.test_set) == 16


def test_task_a_with_other_b_classes(tiny_fmnist):
    dm = _dm(tiny_fmnist, task="A", b_classes=(0, 2))
    mapping = {1: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5, 8: 6, 9: 7}
    assert dm.test_set.targets.tolist() == [mapping[int(c)] for c in tiny_fmnist.test_labels if int(c) in mapping]
    assert dm.class_names[0] == "Trouser"


def test_task_b_binary_labels_and_cut_training_split(tiny_fmnist):
    dm = _dm(tiny_fmnist, task="B", b_train_size=4)
    assert dm.class_names == ("Sandal", "Shirt")
    assert dm.num_classes == 2
    # Training split = file images 10..59; classes 5/6 at 15, 16, 25, 26, ...; the first four are kept.
    assert torch.equal(dm.train_set.inputs, _scaled(tiny_fmnist.train_images[[15, 16, 25, 26]]))
    assert dm.train_set.targets.tolist() == [0, 1, 0, 1]
    assert torch.equal(dm.val_set.inputs, _scaled(tiny_fmnist.train_images[[5, 6]]))
    # Test labels are (i + 3) % 10: sandal at 2 and 12, shirt at 3 and 13; the test split is not cut.
    assert torch.equal(dm.test_set.inputs, _scaled(tiny_fmnist.test_images[[2, 3, 12, 13]]))
    assert dm.test_set.targets.tolist() == [0, 1, 0, 1]


def test_task_b_newer_edition_classes(tiny_fmnist):
    dm = _dm(tiny_fmnist, task="B", b_classes=(0, 2), b_train_size=10)
    assert dm.class_names == ("T-shirt/top", "Pullover")
    # Training split = file images 10..59: T-shirts at 10, 20, ..., pullovers at 12, 22, ...
    assert dm.train_set.targets.tolist() == [0, 1] * 5
    assert torch.equal(dm.train_set.inputs, _scaled(tiny_fmnist.train_images[[10, 12, 20, 22, 30, 32, 40, 42, 50, 52]]))


def test_task_b_train_size_larger_than_available(tiny_fmnist):
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), task="B", val_size=10, b_train_size=11)
    with pytest.raises(ValueError, match=r"b_train_size: 11 is larger than the 10 task-B training images available"):
        dm.setup("fit")


def test_standardize_uses_training_split_statistics(make_fmnist):
    fake = make_fmnist(n_train=60)
    fake.train_images[:, 0, 0] = 7  # a constant pixel: its std is floored at 1/255
    write_idx(fake.path / "train-images-idx3-ubyte.gz", fake.train_images)
    dm = _dm(fake, standardize=True)
    train = _scaled(fake.train_images[10:])
    assert torch.allclose(dm.mean, train.mean(0))
    assert torch.allclose(dm.std, train.std(0).clamp_min(1 / 255))
    x = dm.train_set.inputs
    assert x[:, 0, 0, 0].abs().max() < 1e-5
    assert torch.allclose(x.mean(0), torch.zeros(1, 28, 28), atol=1e-5)
    std = x.std(0)
    std[0, 0, 0] = 1.0
    assert torch.allclose(std, torch.ones(1, 28, 28), atol=1e-4)
    assert torch.allclose(dm.val_set.inputs, (_scaled(fake.train_images[:10]) - dm.mean) / dm.std)
    for task in ("A", "B"):
        other = _dm(fake, standardize=True, task=task, b_train_size=2)
        assert torch.equal(other.mean, dm.mean)
        assert torch.equal(other.std, dm.std)
    b = _dm(fake, standardize=True, task="B", b_train_size=2)
    assert torch.equal(b.test_set.inputs, dm.test_set.inputs[[2, 3, 12, 13]])


def test_train_size_keeps_the_first_training_images(tiny_fmnist):
    dm = _dm(tiny_fmnist, task="A", train_size=5)
    keep = [i for i in range(10, 60) if int(tiny_fmnist.train_labels[i]) in TASK_A_LABELS][:5]
    assert torch.equal(dm.train_set.inputs, _scaled(tiny_fmnist.train_images[keep]))
    assert len(dm.val_set) == 8
    with pytest.raises(ValueError, match=r"train_size: 41 is larger than the 40 training images"):
        _dm(tiny_fmnist, task="A", train_size=41)


def test_state_dict_round_trip(tiny_fmnist):
    dm = _dm(tiny_fmnist, standardize=True)
    fresh = FashionMNISTDataModule(str(tiny_fmnist.path))
    fresh.load_state_dict(dm.state_dict())
    assert torch.equal(fresh.mean, dm.mean)
    assert torch.equal(fresh.std, dm.std)


def test_augment_only_touches_training_batches(tiny_fmnist):
    dm = _dm(tiny_fmnist, augment=True, max_shift=2)
    x, _ = _concat(dm.val_dataloader())
    assert torch.equal(x, _scaled(tiny_fmnist.train_images[:10]))
    batches = [b[0] for b in dm.train_dataloader()]
    assert torch.cat(batches).shape == (50, 1, 28, 28)
    plain = _dm(tiny_fmnist)
    assert not torch.equal(torch.cat(batches), torch.cat([b[0] for b in plain.train_dataloader()]))


def test_dataloader_before_setup(tiny_fmnist):
    with pytest.raises(RuntimeError, match=r"call setup\(\) before asking for a dataloader"):
        FashionMNISTDataModule(str(tiny_fmnist.path)).train_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "C"}, r"task: must be one of \('full', 'A', 'B'\), got 'C'"),
        ({"b_classes": (5, 5)}, r"b_classes: the two classes overlap, got \(5, 5\)"),
        ({"b_classes": (5, 10)}, r"b_classes: expected two class indices in 0..9, got \(5, 10\)"),
        ({"b_classes": (-1, 5)}, r"b_classes: expected two class indices in 0..9, got \(-1, 5\)"),
        ({"b_classes": (1, 2, 3)}, r"b_classes: expected two class indices in 0..9, got \(1, 2, 3\)"),
        ({"b_classes": ("5", 6)}, r"b_classes: expected two class indices in 0..9, got \('5', 6\)"),
        ({"batch_size": 0}, r"batch_size: must be an integer >= 1, got 0"),
        ({"eval_batch_size": -1}, r"eval_batch_size: must be an integer >= 1, got -1"),
        ({"val_size": 0}, r"val_size: must be an integer in \[1, 59999\], got 0"),
        ({"val_size": 60_000}, r"val_size: must be an integer in \[1, 59999\], got 60000"),
        ({"b_train_size": 0}, r"b_train_size: must be an integer >= 1, got 0"),
        ({"train_size": 0}, r"train_size: must be None or an integer >= 1, got 0"),
        ({"max_shift": -1}, r"max_shift: must be an integer >= 0, got -1"),
    ],
)
def test_bad_arguments(tiny_fmnist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FashionMNISTDataModule(str(tiny_fmnist.path), **kwargs)


def test_on_device_must_be_a_bool(tiny_fmnist):
    with pytest.raises(TypeError, match=r"^on_device: must be True or False, got 'cuda'"):
        FashionMNISTDataModule(str(tiny_fmnist.path), on_device="cuda")


def test_val_size_leaving_no_training_images(tiny_fmnist):
    dm = FashionMNISTDataModule(str(tiny_fmnist.path), val_size=60)
    with pytest.raises(ValueError, match=r"val_size: 60 leaves no training images out of 60"):
        dm.setup("fit")


@pytest.mark.realdata
def test_real_splits_and_standardisation(monkeypatch):
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    dm = FashionMNISTDataModule(str(REAL_DIR), standardize=True)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55_000, 5_000, 10_000)
    x = dm.train_set.inputs
    assert x.mean(0).abs().max() < 1e-4
    std = x.std(0)
    assert ((std - 1).abs() < 1e-3).float().mean() > 0.99  # all but the floored near-constant pixels
    assert (std <= 1 + 1e-3).all()
    images, labels = load_fashion_mnist("train", REAL_DIR)
    assert torch.equal(dm.val_set.targets, labels[:5000])
    assert torch.allclose(dm.val_set.inputs[:100], (_scaled(images[:100]) - dm.mean) / dm.std)
    assert torch.equal(dm.test_set.targets, load_fashion_mnist("test", REAL_DIR)[1])
    b = FashionMNISTDataModule(str(REAL_DIR), task="B")
    b.setup("fit")
    assert len(b.train_set) == 200
    assert len(b.test_set) == 2000
    assert b.test_set.targets.sum() == 1000


DDP_SCRIPT = """
import sys
import torch
import lightning.pytorch as pl
from lit_deep import Classifier
from lit_deep.cli import release_process_group
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP


class Recording(Classifier):
    def on_fit_start(self):
        self.seen = {"train": [], "val": [], "test": []}

    on_test_start = on_fit_start

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0])
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0])
        super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.seen["test"].append(batch[0])
        super().test_step(batch, batch_idx)

    def on_validation_epoch_end(self):
        self.val_weight = float(self.val_nll.weight)  # this rank's count, before Lightning syncs and resets
        super().on_validation_epoch_end()

    def on_test_epoch_end(self):
        self.test_weight = float(self.test_nll.weight)


if __name__ == "__main__":
    data_dir, out = sys.argv[1], sys.argv[2]
    model = Recording(MLP(hidden=(16,), seed=0), optimizer="sgd", lr=0.05)
    dm = FashionMNISTDataModule(data_dir, val_size=7, batch_size=2, eval_batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, dm)
    val = {k: float(v) for k, v in trainer.callback_metrics.items()}
    train_seen, val_seen, val_weight = model.seen["train"], model.seen["val"], model.val_weight
    trainer.test(model, dm, verbose=False)
    test = {k: float(v) for k, v in trainer.callback_metrics.items()}
    torch.save({"train": torch.cat(train_seen), "val": torch.cat(val_seen), "test": torch.cat(model.seen["test"]),
                "val_weight": val_weight, "test_weight": model.test_weight, "val_metrics": val,
                "test_metrics": test, "state": model.model.state_dict()},
               f"{out}/rank{trainer.global_rank}.pt")
    release_process_group()
"""


@pytest.mark.ddp
def test_ddp_shards_count_every_evaluation_image_once(make_fmnist, tmp_path):
    import lightning.pytorch as pl

    from lit_deep import Classifier
    from lit_deep.models import MLP

    fake = make_fmnist(n_train=27, n_test=13)  # 7 validation and 20 training images; 13 test images
    run_ddp_script(tmp_path, DDP_SCRIPT, str(fake.path), str(tmp_path), timeout=240)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # Contiguous, unpadded evaluation shards: rank 0 then rank 1 is the file order.
    assert torch.equal(torch.cat([r["val"] for r in ranks]), _scaled(fake.train_images[:7]))
    assert torch.equal(torch.cat([r["test"] for r in ranks]), _scaled(fake.test_images))
    assert [r["val_weight"] for r in ranks] == [4.0, 3.0]
    assert [r["test_weight"] for r in ranks] == [7.0, 6.0]
    # Training shards: disjoint, equal length, from the 20 training images.
    train0, train1 = (r["train"].flatten(1) for r in ranks)
    assert len(train0) == len(train1) == 10
    assert not (train0[:, None] == train1[None]).all(-1).any()
    # The synced metrics equal a single-process evaluation of the same weights.
    assert torch.equal(ranks[0]["state"]["head.weight"], ranks[1]["state"]["head.weight"])
    net = MLP(hidden=(16,))
    net.load_state_dict(ranks[0]["state"])
    dm = FashionMNISTDataModule(str(fake.path), val_size=7, eval_batch_size=5)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    single = trainer.test(Classifier(net), dm, verbose=False)[0]
    for key in ("test_acc", "test_nll"):
        assert ranks[0]["test_metrics"][key] == pytest.approx(single[key], abs=1e-6)
        assert ranks[1]["test_metrics"][key] == ranks[0]["test_metrics"][key]
    # Training metrics are logged once per epoch and reduced over both ranks (identical on each).
    for key in ("train_acc", "train_nll"):
        assert ranks[0]["val_metrics"][key] == ranks[1]["val_metrics"][key]
    # Validation ran at the end of the (only) epoch, with the final weights.
    single_val = trainer.validate(Classifier(net), dm, verbose=False)[0]
    for key in ("val_acc", "val_nll", "val_loss"):
        assert ranks[0]["val_metrics"][key] == pytest.approx(single_val[key], abs=1e-6)
