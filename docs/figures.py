"""Draw the technique pages' figures into docs/figures/ (small PNGs, committed): `python docs/figures.py`.

Most are computed here in a second or two (activation spread at initialisation, the activations, dropout on SELU
nets, clipping, max-norm, the schedules); the bar charts read the measured results in `recipes/results/`; the
reliability diagrams and the uncertain images run the zoo's `mlp_mc.fmnist` on the 10,000 Fashion-MNIST test
images with 100 MC samples (about 10 s on 2 cores; needs the data). One torch thread, fixed seeds.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
sys.path.insert(0, str(ROOT))

from lit_deep.models import MLP, make_activation  # noqa: E402
from lit_deep.nn import max_norm_  # noqa: E402
from lit_deep.schedules import ExponentialDecay, OneCycle, PiecewiseConstant, PowerDecay, schedule_trace  # noqa: E402


def save(fig: Figure, name: str) -> None:
    fig.savefig(OUT / name, dpi=80)
    print("wrote", OUT / name)


def layer_spread(model: nn.Module, x: torch.Tensor, kinds: tuple[type, ...]) -> tuple[list[float], list[float]]:
    """Mean and std of every layer of the given kinds' output, in forward order, for one batch."""
    means, stds = [], []

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        means.append(output.mean().item())
        stds.append(output.std().item())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return means, stds


def pytorch_default(model: nn.Module) -> nn.Module:
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    return model


ACTIVATION_KINDS = (nn.ReLU, nn.SELU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)


def init_spread() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, 100)
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    setups = {
        "tanh, PyTorch default init": pytorch_default(MLP((100,), [100] * 50, activation="tanh", seed=0)),
        "ReLU, PyTorch default init": pytorch_default(MLP((100,), [100] * 50, activation="relu", seed=0)),
        "tanh, Glorot normal": MLP((100,), [100] * 50, activation="tanh", init="glorot_normal", seed=0),
        "ReLU, He normal": MLP((100,), [100] * 50, activation="relu", init="he_normal", seed=0),
        "SELU, LeCun normal": MLP((100,), [100] * 50, activation="selu", init="lecun_normal", seed=0),
    }
    for name, model in setups.items():
        _, stds = layer_spread(model, x, ACTIVATION_KINDS)
        ax.plot(range(1, len(stds) + 1), stds, label=name)
    ax.set(xlabel="layer", ylabel="activation std", yscale="log", title="50 dense layers at initialisation, N(0, 1) inputs")
    ax.legend(fontsize=8)
    save(fig, "init_spread.png")


def activations() -> None:
    z = torch.linspace(-4, 3, 300).unsqueeze(1)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for name in ("relu", "leaky_relu", "elu", "selu", "sigmoid", "tanh"):
        with torch.no_grad():
            ax.plot(z.squeeze(1), make_activation(name, 1)(z).squeeze(1), label=name)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set(xlabel="z", ylabel="activation", ylim=(-2, 3), title="Activations as lit_deep builds them (leaky slope 0.2)")
    ax.legend(fontsize=8)
    save(fig, "activations.png")


def self_normalizing() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, 100)
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    mean_ax, std_ax = fig.subplots(1, 2)
    for name, model in {
        "SELU, LeCun normal": MLP((100,), [100] * 100, activation="selu", init="lecun_normal", seed=0),
        "SELU, He normal": MLP((100,), [100] * 100, activation="selu", init="he_normal", seed=0),
        "ELU, He normal": MLP((100,), [100] * 100, activation="elu", init="he_normal", seed=0),
    }.items():
        means, stds = layer_spread(model, x, ACTIVATION_KINDS)
        mean_ax.plot(means, label=name)
        std_ax.plot(stds, label=name)
    mean_ax.set(xlabel="layer", ylabel="activation mean", title="100 layers: mean")
    std_ax.set(xlabel="layer", ylabel="activation std", yscale="log", title="100 layers: std")
    std_ax.legend(fontsize=8)
    save(fig, "self_normalizing.png")


def batch_norm() -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 100) * 3 + 1  # unnormalised inputs
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for name, bn in (("sigmoid, no BN", None), ("sigmoid, BN before the activation", "before")):
        model = MLP((100,), [100] * 20, activation="sigmoid", init="glorot_uniform", batch_norm=bn, seed=0).train()
        _, stds = layer_spread(model, x, (nn.Sigmoid,))
        ax.plot(range(1, len(stds) + 1), stds, marker=".", label=name)
    ax.set(xlabel="layer", ylabel="activation std", yscale="log", title="20 sigmoid layers at initialisation (training mode)")
    ax.legend()
    save(fig, "batch_norm.png")


def clipping() -> None:
    gradient = torch.tensor([0.9, 100.0])
    by_value = gradient.clamp(-1.0, 1.0)
    by_norm = gradient / gradient.norm()
    fig = Figure(figsize=(4.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for vector, label, color in ((by_value, "clip by value 1.0: [0.9, 1.0]", "tab:red"),
                                 (by_norm, "clip by norm 1.0: [0.009, 1.0]", "tab:blue")):
        ax.annotate("", xy=vector.tolist(), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
        ax.plot([], [], color=color, label=label)
    ax.plot([0, by_norm[0] * 1.3], [0, by_norm[1] * 1.3], "k--", linewidth=1, label="direction of [0.9, 100]")
    ax.set(xlim=(-0.1, 1.2), ylim=(-0.1, 1.4), aspect="equal", xlabel="g1", ylabel="g2", title="The book's example")
    ax.legend(fontsize=8, loc="lower right")
    save(fig, "clipping.png")


def schedules() -> None:
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    cycle_ax, decay_ax = fig.subplots(1, 2)
    for preset in ("book", "torch", "fastai"):
        cycle_ax.plot(schedule_trace(functools.partial(OneCycle, max_lr=0.05, preset=preset), 430 * 25).lr, label=preset)
    cycle_ax.set(xlabel="step", ylabel="learning rate", title="1cycle presets (25 epochs x 430 steps, max 0.05)")
    cycle_ax.legend()
    for label, schedule in (
        ("PowerDecay(s=5)", functools.partial(PowerDecay, s=5)),
        ("ExponentialDecay(s=10)", functools.partial(ExponentialDecay, s=10)),
        ("PiecewiseConstant([5, 15])", functools.partial(PiecewiseConstant, boundaries=[5, 15], values=[0.01, 0.005, 0.001])),
    ):
        decay_ax.plot(schedule_trace(schedule, 25, lr=0.01).lr, marker=".", label=label)
    decay_ax.set(xlabel="epoch", ylabel="learning rate", title="Decays (lr0 = 0.01, per epoch)")
    decay_ax.legend(fontsize=8)
    save(fig, "schedules.png")


def dropout_selu() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, 100)
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for name, kind in (("SELU + standard dropout 0.2", "standard"), ("SELU + alpha dropout 0.2", "alpha")):
        model = MLP((100,), [100] * 30, activation="selu", dropout=0.2, dropout_kind=kind, seed=0).train()
        _, stds = layer_spread(model, x, (nn.SELU,))
        ax.plot(range(1, len(stds) + 1), stds, marker=".", label=name)
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set(xlabel="layer", ylabel="activation std (training mode)", title="Dropout in a self-normalising net")
    ax.legend()
    save(fig, "dropout_selu.png")


def max_norm() -> None:
    torch.manual_seed(0)
    weight = torch.randn(300, 784) * (0.02 + 0.04 * torch.rand(300, 1))  # rows of different norms
    before = weight.norm(dim=1)
    after = max_norm_(weight.clone(), 1.0).norm(dim=1)
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    bins = torch.linspace(0, float(before.max()) + 0.05, 41).numpy()
    ax.hist(before.numpy(), bins=bins, alpha=0.6, label="before")
    ax.hist(after.numpy(), bins=bins, alpha=0.6, label="after max_norm_(w, 1.0)")
    ax.set(xlabel="L2 norm of a neuron's incoming weights (row of a 300x784 weight)", ylabel="neurons")
    ax.legend()
    save(fig, "max_norm.png")


def results_bars(group: str, name: str, title: str, keep: Callable[[str], bool] = lambda _: True) -> None:
    runs = {}
    for path in sorted((ROOT / "recipes" / "results" / group).glob("*.json")):
        if keep(path.stem):
            runs[path.stem] = json.loads(path.read_text())["metrics"]
    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.add_subplot()
    names = list(runs)
    acc = [100 * runs[n]["test_acc"] for n in names]
    ax.bar(names, acc, color="tab:purple")
    for i, value in enumerate(acc):
        ax.text(i, value + 0.1, f"{value:.2f}", ha="center", fontsize=8)
    ax.set(ylim=(min(acc) - 3, max(acc) + 1.5), ylabel="test accuracy %", title=title)
    ax.tick_params(axis="x", labelsize=8)
    save(fig, name)


def transfer_seeds() -> None:
    results = json.loads((ROOT / "recipes" / "results" / "transfer.json").read_text())
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    for ax, split in zip(fig.subplots(1, len(results["splits"])), results["splits"]):
        for x, model in enumerate(("transfer", "scratch")):
            accs = [100 * seed[model]["mc_accuracy"] for seed in split["per_seed"]]
            ax.scatter([x] * len(accs), accs, alpha=0.6)
        ax.set_xticks([0, 1], ["B-on-A", "scratch"])
        ax.set(
            xlim=(-0.5, 1.5),
            ylabel="test accuracy % (MC)",
            title=f"{' vs '.join(split['names'])}, {split['train_size']} images, {split['seeds']} seeds",
        )
    save(fig, "transfer_seeds.png")


def mc_dropout() -> None:
    from lit_deep import zoo
    from lit_deep.data import CLASS_NAMES, load_fashion_mnist
    from lit_deep.uncertainty import deterministic_probs, mc_predict, reliability_diagram

    images, labels = load_fashion_mnist("test")
    x = images.float() / 255
    model = zoo.load("mlp_mc.fmnist")
    prediction = mc_predict(model, x, samples=100, seed=0)
    reliability_diagram(deterministic_probs(model, x), labels, OUT / "reliability_det.png", title="mlp_mc.fmnist, one pass")
    reliability_diagram(prediction, labels, OUT / "reliability_mc.png", title="mlp_mc.fmnist, 100 MC samples")
    print("wrote", OUT / "reliability_det.png", OUT / "reliability_mc.png")
    order = prediction.entropy.argsort(descending=True)[:8].tolist()
    fig = Figure(figsize=(10, 2.6), layout="constrained")
    for ax, i in zip(fig.subplots(1, 8), order):
        p = int(prediction.prediction[i])
        ax.imshow(images[i].numpy(), cmap="binary")
        ax.set_title(f"{CLASS_NAMES[labels[i]]}\n-> {CLASS_NAMES[p]} {prediction.probs[i, p]:.2f}"
                     f"\n± {prediction.std[i, p]:.2f}", fontsize=8)
        ax.axis("off")
    save(fig, "uncertain.png")


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    init_spread()
    activations()
    self_normalizing()
    batch_norm()
    clipping()
    schedules()
    dropout_selu()
    max_norm()
    results_bars("init", "results_init.png", "Initialisers, 300-100 ReLU MLP, 5 epochs")
    results_bars("activations", "results_activations.png", "Activations, 300-100 MLP, 5 epochs")
    results_bars("optimizers", "results_optimizers.png", "Optimizers, 300-100 MLP, 5 epochs")
    results_bars("regularization", "results_regularization.png", "Regularisation, 5 epochs")
    results_bars("batchnorm", "results_batchnorm.png", "Batch norm, 10 epochs")
    results_bars("clipping", "results_clipping.png", "Gradient clipping, 5 epochs")
    results_bars("schedules", "results_schedules.png", "Schedules, 25 epochs")
    transfer_seeds()
    mc_dropout()


if __name__ == "__main__":
    main()
