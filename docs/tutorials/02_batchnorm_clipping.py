# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Batch normalisation and gradient clipping
#
# Two more defences against unstable gradients: batch normalisation (before or after the activation, the
# book's two placements) and gradient clipping (by value or by norm, Lightning's own `gradient_clip_val`).
#
# **Run it locally** (from the repository, after `make setup`): `.venv/bin/python
# docs/tutorials/02_batchnorm_clipping.py` runs it as a script; `.venv/bin/jupytext --to ipynb
# docs/tutorials/02_batchnorm_clipping.py` makes a notebook of it. `LIT_DEEP_QUICK=1` runs it in seconds with
# fewer images and steps; the documentation site shows that quick run.

# %%
# %matplotlib inline
import logging
import os
import time
import warnings

import lightning.pytorch as pl
import torch
from IPython.display import display
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure

from lit_deep import Classifier
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP

QUICK = os.environ.get("LIT_DEEP_QUICK") == "1"
torch.set_num_threads(1 if QUICK else 2)  # the quick run is too small for two threads to pay
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no device banners or tips
warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
pl.seed_everything(42, verbose=False)
START = time.perf_counter()
data = FashionMNISTDataModule(batch_size=128, train_size=2000 if QUICK else None)


class LossHistory(Callback):
    """The training loss of every step (Lightning's loggers would only keep every n-th)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def train(model: torch.nn.Module, lr: float, epochs: int, **trainer_kwargs) -> tuple[float, list[float]]:
    """Fit ``model`` (Nadam at ``lr``) and return its validation accuracy and per-step losses."""
    history = LossHistory()
    trainer = pl.Trainer(
        max_epochs=epochs,
        max_steps=15 if QUICK else -1,
        callbacks=[history],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2 if QUICK else 1.0,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    classifier = Classifier(model, optimizer="nadam", lr=lr)
    trainer.fit(classifier, datamodule=data)
    return trainer.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"], history.losses


# %% [markdown]
# ## Batch norm, the book's way
#
# `MLP(batch_norm="before")` puts a `BatchNorm1d` between each Linear layer (built without bias: BN's shift
# replaces it) and its activation; `"after"` puts it after the activation, as the book's first example does.
# The layers follow Keras: the moving averages keep 0.99 of their old value (PyTorch's `momentum=0.01`) and
# epsilon is 1e-3. The running mean and variance are buffers, not parameters: the "non-trainable params" of
# Keras's summary.

# %%
model = MLP(hidden=(300, 100), batch_norm="before", seed=0)
bn = model.backbone[2]
print(model.backbone[:4])
print(f"momentum={bn.momentum} (keeps {1 - bn.momentum:.2f} of the old average), eps={bn.eps}")
print("trainable parameters:", sum(p.numel() for p in model.parameters()))
print("buffers (moving mean/var, batch count):", sum(b.numel() for b in model.buffers()))

# %% [markdown]
# Three 300-100 ReLU nets, same seed and data: no BN, BN before and BN after the activation. The recipes
# `recipes/batchnorm/*.yaml` run 10 epochs of each (see the Results page).

# %%
epochs = 1 if QUICK else 3
runs = {}
for name, batch_norm in (("no BN", None), ("BN before", "before"), ("BN after", "after")):
    runs[name] = train(MLP(hidden=(300, 100), batch_norm=batch_norm, seed=0), lr=1e-3, epochs=epochs)
    print(f"{name:10s} val accuracy {runs[name][0]:.4f}")

fig = Figure(figsize=(7, 3.5), layout="constrained")
ax = fig.add_subplot()
window = 5 if QUICK else 50
for name, (_, losses) in runs.items():
    smooth = torch.tensor(losses).unfold(0, window, 1).mean(1) if len(losses) > window else torch.tensor(losses)
    ax.plot(smooth, label=name)
ax.set(xlabel="step", ylabel=f"training loss (mean of {window})", title="Batch normalisation")
ax.legend()
display(fig)

# %% [markdown]
# ## Gradient clipping
#
# Clipping by value bounds every component and can change the gradient's direction; clipping by norm rescales
# the whole vector and keeps it. The book's example, with PyTorch's two functions (which Lightning calls for
# `gradient_clip_algorithm="value"` and `"norm"`):

# %%
for clip in ("value", "norm"):
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.9, 100.0])
    if clip == "value":
        torch.nn.utils.clip_grad_value_([p], 1.0)
    else:
        torch.nn.utils.clip_grad_norm_([p], 1.0)
    print(f"clip by {clip}: {p.grad.tolist()}")

# %% [markdown]
# A deep ReLU net trained with a rate that is too high for it: without clipping the loss jumps, with clipping by
# norm it trains. Keras's `clipnorm` is per weight tensor; Lightning's (and this tutorial's) is over all
# parameters together, as `torch.nn.utils.clip_grad_norm_` does.

# %%
clip_runs = {}
for name, kwargs in (
    ("no clipping", {}),
    ("clip value 1.0", {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"}),
    ("clip norm 1.0", {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm"}),
):
    clip_runs[name] = train(MLP(hidden=[100] * 10, seed=0), lr=0.01, epochs=1, **kwargs)
    print(f"{name:15s} val accuracy {clip_runs[name][0]:.4f}")

fig = Figure(figsize=(7, 3.5), layout="constrained")
ax = fig.add_subplot()
for name, (_, losses) in clip_runs.items():
    ax.plot(losses, label=name, alpha=0.8)
ax.set(xlabel="step", ylabel="training loss", yscale="log", title="Nadam at 0.01 on a 10-layer ReLU net")
ax.legend()
display(fig)
print(f"tutorial ran in {time.perf_counter() - START:.0f} s")
