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
# # Initialisation and activations
#
# The chapter opens with the vanishing/exploding-gradients problem: with a bad initialisation or a saturating
# activation, the spread of the activations shrinks or grows layer after layer. This tutorial measures it with
# the `LayerStats` callback on real Fashion-MNIST, compares the book's initialisers with PyTorch's defaults,
# and trains the chapter's activations side by side.
#
# **Run it locally** (from the repository, after `make setup`): `.venv/bin/python
# docs/tutorials/01_init_activations.py` runs it as a script; `.venv/bin/jupytext --to ipynb
# docs/tutorials/01_init_activations.py` makes a notebook of it. `LIT_DEEP_QUICK=1` runs it in seconds with
# fewer images and steps; the documentation site shows that quick run, so its figures are noisier than a full
# run's.

# %%
# %matplotlib inline
import logging
import os
import time
import warnings

import lightning.pytorch as pl
import torch
from IPython.display import display
from matplotlib.figure import Figure

from lit_deep import Classifier
from lit_deep.callbacks import LayerStats
from lit_deep.data import FashionMNISTDataModule
from lit_deep.models import MLP, make_activation
from lit_deep.nn import he_normal_

QUICK = os.environ.get("LIT_DEEP_QUICK") == "1"
torch.set_num_threads(1 if QUICK else 2)  # the quick run is too small for two threads to pay
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no device banners or tips
warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
pl.seed_everything(42, verbose=False)
STEPS = 10 if QUICK else 400  # training steps per run for the LayerStats comparison
START = time.perf_counter()

# %% [markdown]
# ## The book's initialisers are Keras's
#
# Keras draws `he_normal` from a normal distribution **truncated at two standard deviations**, with the
# standard deviation divided by 0.87962566 so that the variance stays `2 / fan_in`. PyTorch's
# `kaiming_normal_` draws an untruncated normal, and its `trunc_normal_` cuts at absolute bounds (-2, 2), not at
# two standard deviations. `lit_deep.nn.he_normal_` follows Keras:

# %%
weight = torch.empty(300, 784)
torch.manual_seed(0)
keras_like = he_normal_(weight.clone()).flatten()
torch_default = torch.nn.init.kaiming_normal_(weight.clone(), nonlinearity="relu").flatten()
target_std = (2 / 784) ** 0.5
print(f"target std {target_std:.4f}")
print(f"lit_deep he_normal_: std {keras_like.std():.4f}, max |w| / std = {keras_like.abs().max() / target_std:.2f}")
print(f"torch kaiming_normal_: std {torch_default.std():.4f}, max |w| / std = {torch_default.abs().max() / target_std:.2f}")

fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.add_subplot()
ax.hist(torch_default.numpy(), bins=80, alpha=0.5, density=True, label="torch kaiming_normal_")
ax.hist(keras_like.numpy(), bins=80, alpha=0.5, density=True, label="lit_deep he_normal_ (Keras)")
ax.set(xlabel="weight", ylabel="density", title="He-normal weights of a 784 -> 300 layer")
ax.legend()
display(fig)

# %% [markdown]
# ## Non-saturating activations
#
# The book's leaky ReLU has slope 0.2 (PyTorch's default is 0.01, Keras's 0.3); SELU is scaled so that a deep
# stack of dense layers keeps mean 0 and standard deviation 1. `make_activation` builds them as `MLP` does.

# %%
z = torch.linspace(-4, 3, 200)
fig = Figure(figsize=(6, 3.5), layout="constrained")
ax = fig.add_subplot()
for name in ("relu", "leaky_relu", "elu", "selu", "sigmoid"):
    with torch.no_grad():
        ax.plot(z, make_activation(name, 1)(z.unsqueeze(1)).squeeze(1), label=name)
ax.axhline(0, color="grey", linewidth=0.5)
ax.set(xlabel="z", ylabel="activation", ylim=(-2, 3), title="The chapter's activations (leaky slope 0.2)")
ax.legend()
display(fig)

# %% [markdown]
# ## Activation spread layer by layer, with `LayerStats`
#
# Twenty dense layers of 100 units, trained on standardised Fashion-MNIST. `LayerStats(every_n_steps=n)`
# records each activation layer's mean and standard deviation every `n` steps; its `plot()` draws the
# standard deviation per layer, one line per logging step. Three set-ups:
#
# - sigmoid with PyTorch's default `nn.Linear` initialisation (uniform, variance `1 / (3 fan_in)`): the
#   activations collapse, the classic picture of Glorot and Bengio;
# - ReLU with He initialisation: the spread holds;
# - SELU with LeCun initialisation: self-normalising, the spread stays near 1.

# %%
data = FashionMNISTDataModule(batch_size=128, standardize=True, train_size=2000 if QUICK else None)


def pytorch_default_init(model: torch.nn.Module) -> torch.nn.Module:
    """Re-run PyTorch's own initialisation of every Linear layer (lit_deep's MLP uses Keras's)."""
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    return model


setups = {
    "sigmoid, PyTorch default init": pytorch_default_init(MLP(hidden=[100] * 20, activation="sigmoid", seed=0)),
    "ReLU, He normal": MLP(hidden=[100] * 20, activation="relu", init="he_normal", seed=0),
    "SELU, LeCun normal": MLP(hidden=[100] * 20, activation="selu", init="lecun_normal", seed=0),
}
stats, accuracy = {}, {}
for name, model in setups.items():
    stats[name] = LayerStats(every_n_steps=max(STEPS // 4, 5))
    trainer = pl.Trainer(
        max_steps=STEPS,
        callbacks=[stats[name]],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2 if QUICK else 1.0,
        num_sanity_val_steps=0,
    )
    classifier = Classifier(model, optimizer="sgd", lr=0.01)
    trainer.fit(classifier, datamodule=data)
    accuracy[name] = trainer.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"]
    print(f"{name:32s} val accuracy after {STEPS} steps: {accuracy[name]:.3f}")

# %%
for name, callback in stats.items():
    fig = callback.plot()
    fig.axes[0].set_title(f"Activation std per layer: {name}")
    display(fig)

# %% [markdown]
# The first and last logging steps side by side: at initialisation the sigmoid net's spread falls towards
# zero with depth, ReLU + He holds it, SELU + LeCun keeps it close to 1.

# %%
fig = Figure(figsize=(7, 3.5), layout="constrained")
ax = fig.add_subplot()
for name, callback in stats.items():
    first = list(callback.history[0]["act_std"].values())
    ax.plot(range(1, len(first) + 1), first, marker=".", label=name)
ax.set(xlabel="layer", ylabel="activation std at step 0", yscale="log", title="Spread at initialisation")
ax.legend()
display(fig)

# %% [markdown]
# ## The chapter's activations on the 300-100 MLP
#
# The recipes `recipes/activations/*.yaml` train each for 5 epochs (see the Results page); here one short run
# each, same seed, Nadam.

# %%
data = FashionMNISTDataModule(batch_size=128, train_size=2000 if QUICK else None)
results = {}
for activation in ("relu", "leaky_relu", "prelu", "elu", "selu"):
    model = MLP(hidden=(300, 100), activation=activation, seed=1)
    trainer = pl.Trainer(
        max_epochs=1,
        max_steps=10 if QUICK else -1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2 if QUICK else 1.0,
        num_sanity_val_steps=0,
    )
    classifier = Classifier(model, optimizer="nadam", lr=1e-3)
    trainer.fit(classifier, datamodule=data)
    results[activation] = trainer.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"]
for activation, acc in results.items():
    print(f"{activation:12s} val accuracy {acc:.4f}")
print(f"tutorial ran in {time.perf_counter() - START:.0f} s")
