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
# # Regularisation and Monte-Carlo dropout
#
# The chapter's last section: l1 and l2 penalties, dropout, max-norm, and Monte-Carlo dropout, which turns a
# dropout network into an estimate of its own uncertainty. We check calibration with a reliability diagram and
# look at the test images the model is least sure about.
#
# **Run it locally** (from the repository, after `make setup`): `.venv/bin/python
# docs/tutorials/05_regularization_mc_dropout.py` runs it as a script; `.venv/bin/jupytext --to ipynb
# docs/tutorials/05_regularization_mc_dropout.py` makes a notebook of it. `LIT_DEEP_QUICK=1` runs it in seconds
# with fewer images, steps and MC samples; the documentation site shows that quick run.

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

from lit_deep import Classifier, zoo
from lit_deep.callbacks import MaxNorm
from lit_deep.data import CLASS_NAMES, FashionMNISTDataModule, load_fashion_mnist
from lit_deep.models import MLP
from lit_deep.uncertainty import calibration_report, deterministic_probs, mc_predict, reliability_diagram

QUICK = os.environ.get("LIT_DEEP_QUICK") == "1"
torch.set_num_threads(1 if QUICK else 2)  # the quick run is too small for two threads to pay
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no device banners or tips
warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
START = time.perf_counter()
data = FashionMNISTDataModule(batch_size=128, train_size=2000 if QUICK else None)


def fit(classifier: Classifier, callbacks: list[pl.Callback] = ()) -> float:
    """Train for one epoch (a few steps under the quick setting) and return the validation accuracy."""
    trainer = pl.Trainer(
        max_epochs=1,
        max_steps=12 if QUICK else -1,
        callbacks=list(callbacks),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2 if QUICK else 1.0,
        num_sanity_val_steps=0,
    )
    trainer.fit(classifier, datamodule=data)
    return trainer.validate(classifier, datamodule=data, verbose=False)[0]["val_acc"]


# %% [markdown]
# ## l1 and l2 penalties
#
# `Classifier(l1=..., l2=...)` adds the book's penalties to the loss, on weight matrices only (Keras's
# `kernel_regularizer`: `l2 * sum(w ** 2)`, no factor 1/2, biases untouched). That is not the optimizer's
# `weight_decay`, which lit_deep keeps for decoupled decay (AdamW). l1 drives weights to exactly zero... almost:
# with a plain gradient step they hover around it; `recipes/presets/sparse.yaml` prunes them afterwards.

# %%
fig = Figure(figsize=(7, 3), layout="constrained")
ax = fig.add_subplot()
for label, kwargs in (("no penalty", {}), ("l2 = 1e-3", {"l2": 1e-3}), ("l1 = 1e-4", {"l1": 1e-4})):
    classifier = Classifier(MLP(hidden=(300, 100), seed=0), optimizer="nadam", **kwargs)
    acc = fit(classifier)
    weights = classifier.model.backbone[1].weight.detach().flatten()
    print(f"{label:11s} val accuracy {acc:.4f}, first layer: mean |w| {weights.abs().mean():.4f}, "
          f"|w| < 1e-3: {(weights.abs() < 1e-3).float().mean():.1%}")
    ax.hist(weights.numpy(), bins=100, range=(-0.15, 0.15), histtype="step", label=label, density=True)
ax.set(xlabel="weight of the first layer", ylabel="density", title="Weights after training")
ax.legend()
display(fig)

# %% [markdown]
# ## Dropout and max-norm
#
# `MLP(dropout=0.2)` puts a dropout layer before every Linear layer, input included (the book's placement);
# `dropout_kind="alpha"` is the SELU variant. `MaxNorm(r)` is Keras's `max_norm` constraint as a callback: after
# every real optimizer step it rescales each neuron's incoming weights (a row of a Linear weight, an output
# filter of a convolution) to a norm of at most `r`; biases are left alone.

# %%
classifier = Classifier(MLP(hidden=(300, 100), dropout=0.2, seed=0), optimizer="nadam")
acc = fit(classifier, [MaxNorm(1.0)])
row_norms = classifier.model.backbone[2].weight.detach().norm(dim=1)
print(f"dropout 0.2 + max-norm 1.0: val accuracy {acc:.4f}; largest row norm of the first layer {row_norms.max():.4f}")

# %% [markdown]
# ## Monte-Carlo dropout with a zoo model
#
# `mlp_mc.fmnist` is the book's MC-dropout MLP (300-100 ReLU, dropout 0.2, always on). `mc_predict` runs
# `samples` stochastic passes and returns the mean probabilities, their spread and the uncertainty scores
# (predictive entropy, mutual information, variation ratio). It runs the layers below the first dropout once,
# seeds every image's masks from its index (the same result for any batching), and keeps everything else
# (BatchNorm) in eval mode: `Trainer.predict` would switch dropout off, `model.train()` would switch BatchNorm
# to batch statistics.

# %%
images, labels = load_fashion_mnist("test")
n = 1000 if QUICK else len(labels)
images, labels = images[:n].float() / 255, labels[:n]  # the zoo models take [0, 1] pixels
model = zoo.load("mlp_mc.fmnist")
prediction = mc_predict(model, images, samples=10 if QUICK else 100, seed=0)
single = deterministic_probs(model, images)  # dropout off: one deterministic pass
for name, probs in (("one deterministic pass", single), ("MC dropout", prediction)):
    print(f"{name:23s}", {k: round(v, 4) for k, v in calibration_report(probs, labels).items()})

# %%
for name, probs in (("Deterministic", single), ("MC dropout", prediction)):
    display(reliability_diagram(probs, labels, title=f"{name}, {n} test images"))

# %% [markdown]
# ## The images it is least sure about
#
# Sorted by predictive entropy; each title gives the true class, the predicted one with its mean probability,
# and the standard deviation of that probability over the MC samples.

# %%
order = prediction.entropy.argsort(descending=True)[:8]
fig = Figure(figsize=(10, 3), layout="constrained")
for ax, i in zip(fig.subplots(1, 8), order.tolist()):
    predicted = int(prediction.prediction[i])
    ax.imshow(images[i].numpy(), cmap="binary")
    ax.set_title(
        f"{CLASS_NAMES[labels[i]]}\n-> {CLASS_NAMES[predicted]} {prediction.probs[i, predicted]:.2f}"
        f"\n± {prediction.std[i, predicted]:.2f}",
        fontsize=8,
    )
    ax.axis("off")
display(fig)
print(f"tutorial ran in {time.perf_counter() - START:.0f} s")
