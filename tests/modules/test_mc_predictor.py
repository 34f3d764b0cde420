import lightning.pytorch as pl
import pytest
import torch

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.modules.mc_predictor import MCPredictor, index_batches
from lit_deep.uncertainty import MCPrediction, mc_predict
from tests.conftest import run_ddp_script

FIELDS = ("probs", "std", "entropy", "mutual_info", "variation_ratio")


def _model():
    # Ordinary nn.Dropout (off after Lightning's eval()) and BatchNorm (must stay in eval mode).
    return MLP(hidden=(16,), num_classes=10, batch_norm="after", dropout=0.3, seed=0)


def _trainer(**kwargs):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, **kwargs)


def test_trainer_predict_returns_mc_prediction_in_dataset_order(make_fmnist):
    data = make_fmnist(n_train=60, n_test=45)
    dm = FashionMNISTDataModule(str(data.path), val_size=10, eval_batch_size=10)
    clf = Classifier(_model(), mc_samples=20, mc_seed=3)
    bn_modes = []
    clf.model.backbone[3].register_forward_hook(lambda m, i, o: bn_modes.append(m.training))
    (pred,) = _trainer(devices=1).predict(clf, dm)
    assert isinstance(pred, MCPrediction)
    assert len(pred) == 45
    assert bn_modes
    assert not any(bn_modes)
    x = data.test_images.unsqueeze(1).float() / 255
    ref = mc_predict(_model(), x, 20, seed=3, enable_dropout=True)
    for name in FIELDS:
        assert torch.allclose(getattr(pred, name), getattr(ref, name), atol=1e-6), name
    assert torch.equal(pred.prediction, ref.prediction)
    assert pred.std.max() > 0  # dropout was on despite Lightning's eval()
    assert clf.mc_predictor is not None
    assert clf.mc_predictor.results[0] is not None


def test_plain_predict_is_unchanged_and_bad_arguments_raise(make_fmnist):
    dm = FashionMNISTDataModule(str(make_fmnist(n_test=12).path), val_size=10, eval_batch_size=5)
    batches = _trainer(devices=1).predict(Classifier(_model()), dm)
    assert [b.shape for b in batches] == [(5, 10), (5, 10), (2, 10)]
    with pytest.raises(ValueError, match="mc_samples: must be an integer >= 0, got -1"):
        Classifier(_model(), mc_samples=-1)
    with pytest.raises(ValueError, match="mc_seed"):
        Classifier(_model(), mc_samples=2, mc_seed=-5)


def test_index_batches_of_plain_loaders():
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(7, 2)), batch_size=3)
    assert [b.tolist() for b in index_batches(loader)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert index_batches([torch.zeros(2)]) is None
    with pytest.raises(ValueError, match="mc_samples"):
        MCPredictor(0)


DDP_SCRIPT = """
import sys
import lightning.pytorch as pl
import torch
from lit_deep import Classifier
from lit_deep.cli import release_process_group
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP

if __name__ == "__main__":
    data_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    dm = FashionMNISTDataModule(data_dir, val_size=10, eval_batch_size=10)
    model = MLP(hidden=(16,), num_classes=10, batch_norm="after", dropout=0.3, seed=0)
    clf = Classifier(model, mc_samples=20, mc_seed=3)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    preds = trainer.predict(clf, dm)
    local = torch.cat([i for i, _ in clf.mc_predictor._parts[0]])
    torch.save({"preds": preds, "local": local}, f"{out}/rank{trainer.global_rank}.pt")
    release_process_group()
"""


@pytest.mark.ddp
def test_ddp_predict_gathers_on_rank_zero_equal_to_single_process(make_fmnist, tmp_path):
    data = make_fmnist(n_train=60, n_test=45)  # shards [0, 23) and [23, 45): block 0 spans both ranks
    run_ddp_script(tmp_path, DDP_SCRIPT, str(data.path), str(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["local"].tolist() == list(range(23))
    assert rank1["local"].tolist() == list(range(23, 45))
    (gathered,) = rank0["preds"]
    (other,) = rank1["preds"]  # every rank receives the gathered result
    assert torch.equal(other.probs, gathered.probs)
    x = data.test_images.unsqueeze(1).float() / 255
    ref = mc_predict(_model(), x, 20, seed=3, enable_dropout=True)
    assert len(gathered) == 45
    for name in FIELDS:
        assert torch.allclose(getattr(gathered, name), getattr(ref, name), atol=1e-6), name
    assert torch.equal(gathered.prediction, ref.prediction)


def test_two_predict_dataloaders_give_one_mc_prediction_each():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(13, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    loaders = [DataLoader(TensorDataset(x[:7]), batch_size=3), DataLoader(TensorDataset(x), batch_size=5)]
    clf = Classifier(_model(), mc_samples=8, mc_seed=1)
    first, second = _trainer(devices=1).predict(clf, dataloaders=loaders)
    assert [len(p) for p in first + second] == [7, 13]
    ref = mc_predict(_model(), x, 8, seed=1, enable_dropout=True)
    assert torch.allclose(second[0].probs, ref.probs, atol=1e-6)
    assert torch.allclose(first[0].probs, ref.probs[:7], atol=1e-6)
