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
# # Faster optimizers, the LR finder and 1cycle
#
# The chapter's optimizers (momentum, Nesterov, AdaGrad, RMSProp, Adam, AdaMax, Nadam, AdamW) with Keras's
# defaults, the learning-rate range test that picks a rate, and the learning-rate schedules, 1cycle first.
#
# **Run it locally** (from the repository, after `make setup`): `.venv/bin/python
# docs/tutorials/04_optimizers_one_cycle.py` runs it as a script; `.venv/bin/jupytext --to ipynb
# docs/tutorials/04_optimizers_one_cycle.py` makes a notebook of it. `LIT_DEEP_QUICK=1` runs it in seconds with
# fewer images and steps; the documentation site shows that quick run.

# %%
# %matplotlib inline
import functools
import logging
import os
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch
from IPython.display import Image, display
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure

from lit_deep import Classifier
from lit_deep.callbacks import find_lr
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP
from lit_deep.modules import OPTIMIZERS
from lit_deep.schedules import ExponentialDecay, OneCycle, PiecewiseConstant, PowerDecay, schedule_trace

QUICK = os.environ.get("LIT_DEEP_QUICK") == "1"
torch.set_num_threads(1 if QUICK else 2)  # the quick run is too small for two threads to pay
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no device banners or tips
warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
START = time.perf_counter()
data = FashionMNISTDataModule(batch_size=128, standardize=True, train_size=4000 if QUICK else None)


class LossHistory(Callback):
    """The training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def trainer(epochs: int, callbacks: list[Callback] = ()) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        max_steps=12 if QUICK else -1,
        callbacks=list(callbacks),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2 if QUICK else 1.0,
        num_sanity_val_steps=0,
        default_root_dir=tempfile.mkdtemp(),
    )


# %% [markdown]
# ## The optimizers, with Keras's defaults
#
# `Classifier(optimizer=name)` builds them from one table. Where PyTorch's defaults differ from Keras's, the
# table follows Keras: epsilon 1e-7, RMSprop's `rho` 0.9 (PyTorch's `alpha` defaults to 0.99), AdaGrad's
# accumulator starting at 0.1, momentum 0.9.

# %%
for name, (cls, defaults) in OPTIMIZERS.items():
    print(f"{name:9s} {cls.__module__}.{cls.__name__}({', '.join(f'{k}={v}' for k, v in defaults.items())})")

# %% [markdown]
# One epoch of the 300-100 ReLU MLP with each (the book's rate for each family: 0.01 for the SGD family and
# AdaGrad, 1e-3 for the adaptive ones). The recipes `recipes/optimizers/*.yaml` run 5 epochs (the Results page).

# %%
rates = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "nadam": 1e-3}
curves, accuracy = {}, {}
for name, lr in rates.items():
    history = LossHistory()
    classifier = Classifier(MLP(hidden=(300, 100), seed=0), optimizer=name, lr=lr)
    t = trainer(1, [history])
    t.fit(classifier, datamodule=data)
    curves[name], accuracy[name] = history.losses, t.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"]
    print(f"{name:9s} val accuracy {accuracy[name]:.4f}")

fig = Figure(figsize=(7, 3.5), layout="constrained")
ax = fig.add_subplot()
window = 3 if QUICK else 25
for name, losses in curves.items():
    ax.plot(torch.tensor(losses).unfold(0, window, 1).mean(1), label=name)
ax.set(xlabel="step", ylabel=f"training loss (mean of {window})", yscale="log", title="One epoch per optimizer")
ax.legend(ncols=2)
display(fig)

# %% [markdown]
# ## The learning-rate range test
#
# `find_lr` runs Lightning's own range test (rates growing exponentially from 1e-5 to 10, the book's range)
# and applies the book's rule, the rate at the lowest loss divided by 10. With a 1cycle schedule it sets the
# schedule's `max_lr`; otherwise the module's `lr`. (`lit-deep fit --find-lr` does the same from a recipe.)

# %%
classifier = Classifier(MLP(hidden=(300, 100), seed=0), optimizer="sgd", schedule=functools.partial(OneCycle, max_lr=0.1))
found = find_lr(trainer(1), classifier, datamodule=data, num_training=30 if QUICK else 100,
                plot_path=os.path.join(tempfile.mkdtemp(), "lr_finder.png"))
print(f"lowest loss at {found.min_loss_lr:.3g}; set {found.target} = {found.lr:.3g}")
display(Image(filename=str(found.plot)))

# %% [markdown]
# ## Schedules
#
# Every schedule is an `LRScheduler` subclass that takes the optimizer first; `Classifier(schedule=...)` takes a
# factory and steps it per optimizer step (1cycle) or per epoch (the decays). `schedule_trace` records what a
# schedule sets at each step. 1cycle comes in three presets: the book's (linear up from `max_lr / 10`, linear
# down, then a final phase to `max_lr / 10000`, no momentum cycling), PyTorch's `OneCycleLR` (cosine, 30 %
# warm-up, momentum 0.95 <-> 0.85) and fastai's.

# %%
steps = 430 * (5 if QUICK else 25)  # epochs of 430 steps (55,000 images, batch 128)
fig = Figure(figsize=(8, 3.5), layout="constrained")
rate_ax, momentum_ax = fig.subplots(1, 2)
for preset in ("book", "torch", "fastai"):
    trace = schedule_trace(functools.partial(OneCycle, max_lr=0.05, preset=preset), steps)
    rate_ax.plot(trace.lr, label=preset)
    momentum_ax.plot(trace.momentum, label=preset)
rate_ax.set(xlabel="step", ylabel="learning rate", title=f"1cycle, max_lr 0.05, {steps} steps")
momentum_ax.set(xlabel="step", ylabel="momentum", title="momentum (SGD 0.9 when not cycled)")
rate_ax.legend()
display(fig)

fig = Figure(figsize=(6, 3.5), layout="constrained")
ax = fig.add_subplot()
for label, schedule in (
    ("power, s=5", functools.partial(PowerDecay, s=5)),
    ("exponential, s=10", functools.partial(ExponentialDecay, s=10)),
    ("piecewise 5/15", functools.partial(PiecewiseConstant, boundaries=[5, 15], values=[0.01, 0.005, 0.001])),
):
    ax.plot(schedule_trace(schedule, 25, lr=0.01).lr, label=label, marker=".")
ax.set(xlabel="epoch", ylabel="learning rate", title="Decays per epoch (lr0 = 0.01)")
ax.legend()
display(fig)

# %% [markdown]
# ## Training with 1cycle
#
# The rate found above as `max_lr`, SGD, a few epochs. The recipe `recipes/schedules/one_cycle.yaml` runs the
# book's 25 epochs (val 89.54 % here, 89.34 % in the book).

# %%
history = LossHistory()
t = trainer(1 if QUICK else 3, [history])
t.fit(classifier, datamodule=data)
print("val accuracy with 1cycle:", round(t.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"], 4))
fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.add_subplot()
ax.plot(history.losses)
ax.set(xlabel="step", ylabel="training loss", title=f"1cycle, max_lr {classifier.schedule.keywords['max_lr']:.3g}")
display(fig)
print(f"tutorial ran in {time.perf_counter() - START:.0f} s")
