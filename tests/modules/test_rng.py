"""The generator states a lit_deep module saves in a checkpoint: per global rank, restored by each rank."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lit_deep import Classifier, LitDeepWarning
from lit_deep.models import MLP
from lit_deep.modules import _model
from lit_deep.modules._rng import KEY, gather_rng_states, rng_state, set_rng_state


def _draws() -> tuple[torch.Tensor, float, float, float]:
    return torch.rand(3), float(np.random.rand()), random.random(), random.gauss(0, 1)


def test_every_generator_round_trips_including_a_pending_gaussian() -> None:
    random.gauss(0, 1)  # leaves Python's second gaussian pending (gauss_next)
    np.random.standard_normal()  # and NumPy's cached one
    state = rng_state()
    expected = _draws()
    set_rng_state(state)
    again = _draws()
    assert torch.equal(again[0], expected[0]) and again[1:] == expected[1:]


def test_a_checkpoint_holds_one_state_per_rank_and_each_rank_restores_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = Classifier(MLP(hidden=(4,), dropout=0.5, seed=0))
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    saved = torch.load(tmp_path / "one.ckpt", weights_only=True)[KEY]
    assert saved["torch"].shape[0] == 1 and saved["python"].shape == (1, 625)

    torch.manual_seed(1)
    rank0 = rng_state()
    torch.manual_seed(2)
    rank1 = rng_state()
    two = {k: torch.stack([rank0[k], rank1[k]]) for k in rank0}  # what gather_rng_states gives on 2 ranks
    expected = torch.rand(3)  # rank 1's next draw
    cpu = torch.device("cpu")
    for rank, world in ((1, 2), (0, 3)):
        fake = SimpleNamespace(world_size=world, global_rank=rank, strategy=SimpleNamespace(root_device=cpu))
        monkeypatch.setattr(_model, "_attached_trainer", lambda _module, fake=fake: fake)
        torch.manual_seed(99)
        if world == 2:
            module.on_load_checkpoint({KEY: two})
            assert torch.equal(torch.rand(3), expected)  # rank 1 resumed rank 1's stream, not rank 0's
        else:
            with pytest.warns(LitDeepWarning, match="saved by 2 processes, resuming with 3"):
                module.on_load_checkpoint({KEY: two})


def test_gather_stacks_what_all_gather_returns_on_the_given_device() -> None:
    seen: list[torch.device] = []

    def all_gather(tensor: torch.Tensor) -> torch.Tensor:
        seen.append(tensor.device)
        return torch.stack([tensor, tensor])

    states = gather_rng_states(all_gather, 2, torch.device("cpu"))
    assert states["torch"].shape[0] == 2 and seen and all(d.type == "cpu" for d in seen)


def test_a_cuda_state_from_a_gpu_machine_is_skipped_on_a_machine_without_that_device() -> None:
    # Resume where fewer (or no) GPUs are visible than where the checkpoint was saved: the CPU, NumPy and Python
    # generators are restored, the CUDA state is not indexed into a device that does not exist.
    torch.manual_seed(5)
    state = rng_state()
    state["cuda"] = torch.zeros(16, dtype=torch.uint8)  # what a GPU rank saved
    expected = torch.rand(3)
    torch.manual_seed(6)
    set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    set_rng_state(state, None)  # no device known (a direct call): the same
