import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_deep import Classifier
from lit_deep.callbacks import TemperatureScaling
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.uncertainty import TemperatureScaled, expected_calibration_error, fit_temperature, mc_predict, nll
from lit_deep.uncertainty.temperature import Temperature, temperature_from_logits
from tests.conftest import run_ddp_script


def _overconfident(seed=0, n=2000):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    true_logits = x @ torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5], [-0.5, 0.5, 1.0]])
    y = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
    model = nn.Linear(3, 3, bias=False)
    model.weight.data.copy_(4.0 * torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5], [-0.5, 0.5, 1.0]]).T)
    return model, x, y


def test_fitted_temperature_minimises_the_nll_on_a_grid():
    model, x, y = _overconfident()
    t = fit_temperature(model, (x, y))
    with torch.no_grad():
        logits = model(x)
    grid = torch.linspace(0.5, 8, 1500)
    losses = torch.stack([nn.functional.cross_entropy(logits.double() / g, y) for g in grid.double()])
    assert t == pytest.approx(float(grid[losses.argmin()]), abs=0.01)
    assert t > 2  # the logits were inflated four times
    scaled = TemperatureScaled(model, t)
    with torch.no_grad():
        before, after = model(x).softmax(1), scaled(x).softmax(1)
    assert torch.equal(before.argmax(1), after.argmax(1))
    assert nll(after, y) < nll(before, y)
    assert expected_calibration_error(after, y) < expected_calibration_error(before, y)
    loader = DataLoader(TensorDataset(x, y), batch_size=300)
    assert fit_temperature(model, loader) == pytest.approx(t, rel=1e-6)


def test_binary_logits_and_errors():
    g = torch.Generator().manual_seed(0)
    z = 5 * torch.randn(500, generator=g)
    y = (torch.rand(500, generator=g) < torch.sigmoid(z / 5)).long()
    assert temperature_from_logits(z, y) == pytest.approx(5, rel=0.3)
    with pytest.raises(ValueError, match="temperature: must be a finite number > 0, got 0"):
        Temperature(0)
    with pytest.raises(ValueError, match="data: expected a DataLoader or a tuple"):
        fit_temperature(nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="logits: expected"):
        temperature_from_logits(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="max_iter"):
        TemperatureScaling(max_iter=0)


def test_mc_dropout_scales_each_sample():
    model = MLP(input_shape=(3,), hidden=(8,), num_classes=3, dropout=0.3, seed=0)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    plain = mc_predict(model, x, 10, seed=0, enable_dropout=True, return_samples=True)
    scaled = mc_predict(TemperatureScaled(model, 2.0), x, 10, seed=0, enable_dropout=True, return_samples=True)
    # The same masks: every per-sample softmax is that of the halved logits.
    ref = (plain.samples.clamp_min(1e-30).log() / 2.0).softmax(-1)
    assert torch.allclose(scaled.samples, ref, atol=1e-5)


class _Probe(pl.Callback):
    def __init__(self):
        self.kinds = []

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.kinds.append(type(pl_module.model).__name__)


def test_callback_fits_on_validation_and_applies_to_test_and_predict(make_fmnist, tmp_path):
    dm = FashionMNISTDataModule(str(make_fmnist(n_train=120, n_test=30).path), val_size=40, eval_batch_size=16)
    clf = Classifier(MLP(hidden=(16,), seed=0), lr=0.01)
    cb, probe = TemperatureScaling(verbose=False), _Probe()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[cb, probe], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(clf, dm)
    assert cb.temperature is not None
    dm.setup("fit")
    x_val, y_val = dm.val_set.inputs, dm.val_set.targets
    assert cb.temperature == pytest.approx(fit_temperature(clf.model, (x_val, y_val)), rel=1e-5)
    trainer.test(clf, dm)
    assert set(probe.kinds) == {"TemperatureScaled"}
    assert isinstance(clf.model, MLP)  # put back after the test
    (probs, *_) = trainer.predict(clf, dm)
    with torch.no_grad():
        ref = (clf.model(dm.test_set.inputs[:16]) / cb.temperature).softmax(1)
    assert torch.allclose(probs, ref, atol=1e-6)
    restored = TemperatureScaling()
    restored.load_state_dict(cb.state_dict())
    assert restored.temperature == cb.temperature


TEMPERATURE_DDP_SCRIPT = """
import sys
import lightning.pytorch as pl
import torch
from lit_deep import Classifier
from lit_deep.callbacks import TemperatureScaling
from lit_deep.cli import release_process_group
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP

if __name__ == "__main__":
    data_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    dm = FashionMNISTDataModule(data_dir, val_size=45, batch_size=16, eval_batch_size=10)
    clf = Classifier(MLP(hidden=(16,), num_classes=10, dropout=0.2, seed=0), lr=0.01)
    scaling = TemperatureScaling(verbose=False)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[scaling])
    trainer.fit(clf, dm)
    torch.save({"temperature": scaling.temperature, "model": clf.model.state_dict()},
               f"{out}/rank{trainer.global_rank}.pt")
    release_process_group()
"""


@pytest.mark.ddp
def test_ddp_fits_one_temperature_on_the_whole_validation_split(make_fmnist, tmp_path) -> None:  # noqa: ANN001
    # Fitted at on_train_end on the training device, the logits of both ranks' validation shards gathered (45
    # images: shards of 23 and 22): the temperature is the one fitted on every validation image by one process.
    data = make_fmnist(n_train=120, n_test=10)
    run_ddp_script(tmp_path, TEMPERATURE_DDP_SCRIPT, str(data.path), str(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["temperature"] is not None and rank0["temperature"] == rank1["temperature"]
    model = MLP(hidden=(16,), num_classes=10, dropout=0.2, seed=0)
    model.load_state_dict(rank0["model"])
    dm = FashionMNISTDataModule(str(data.path), val_size=45, eval_batch_size=10)
    dm.setup("fit")
    assert fit_temperature(model, dm.val_dataloader()) == pytest.approx(rank0["temperature"], rel=1e-4)
