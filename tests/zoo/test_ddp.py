"""Two processes loading one zoo model at once: only local rank 0 downloads, the other reads the cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lit_deep.zoo._hub import SHIPPED_DIR_ENV
from tests.zoo.conftest import TinyZoo
from tests.zoo.hub_server import HubServer

pytestmark = pytest.mark.ddp

# Registers the test's tiny entry from entry.json (the subprocesses do not see pytest's monkeypatching).
_PRELUDE = """
import json, logging, os, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(message)s")  # the application shows lit_deep.zoo's records
import torch
from safetensors.torch import save_file
from lit_deep import zoo
from lit_deep.zoo.registry import REGISTRY, PreprocessingSpec, ZooEntry

FOLDER, CACHE, OUT = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
entry = json.loads((OUT / "entry.json").read_text())
REGISTRY[entry["name"]] = ZooEntry(
    name=entry["name"], architecture=entry["architecture"],
    preprocessing=PreprocessingSpec(tuple(entry["input_shape"]), entry["standardize"]),
    task="full", class_names=tuple(entry["class_names"]), metrics={}, summary="", limits="", sha256=entry["sha256"],
)
NAME = entry["name"]
"""

_TORCH_DISTRIBUTED = """
import torch.distributed as dist
mode = sys.argv[4]
if mode == "barrier":
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)
model = zoo.load(NAME, cache_dir=CACHE)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, str(OUT / f"rank{os.environ['LOCAL_RANK']}.safetensors"))
if mode == "barrier":
    dist.destroy_process_group()
"""

_LIGHTNING = """
import lightning.pytorch as pl
from torch.utils.data import DataLoader, TensorDataset
from lit_deep import Classifier
from lit_deep.cli import release_process_group

# lit_deep.zoo logs through the standard logging module (no Lightning import), on stderr by default.
# Lightning starts rank 1 by re-running this script (LOCAL_RANK=1) before any process group exists.
module = zoo.classifier(NAME, num_classes=2, cache_dir=CACHE, lr=0.01)
data = TensorDataset(torch.rand(32, 1, 28, 28), torch.randint(0, 2, (32,)))
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(module, DataLoader(data, batch_size=8))
state = {k: v.contiguous() for k, v in module.model.state_dict().items()}
save_file(state, str(OUT / f"rank{trainer.global_rank}.safetensors"))
release_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_entry(tiny_zoo: TinyZoo, out: Path) -> None:
    """What the subprocesses register as the tiny zoo model."""
    entry = tiny_zoo.entry
    fields = {"name": entry.name, "architecture": entry.architecture, "class_names": list(entry.class_names)}
    fields.update(sha256=entry.sha256, input_shape=list(entry.preprocessing.input_shape))
    (out / "entry.json").write_text(json.dumps({**fields, "standardize": entry.preprocessing.standardize}))


def _env(hub: HubServer, tiny_zoo: TinyZoo, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, SHIPPED_DIR_ENV: str(tiny_zoo.empty_dir), "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    return {**env, **extra}


def _assert_one_download_and_same_weights(hub: HubServer, out: Path) -> None:
    # Rank 0 alone asked the Hub: one quick probe (nothing was cached), then one HEAD and one GET per file.
    heads = {"config.json": 2, "model.safetensors": 1}
    for filename in ("config.json", "model.safetensors"):
        assert hub.state.count("GET", filename) == 1, hub.state.requests
        assert hub.state.count("HEAD", filename) == heads[filename], hub.state.requests
    _assert_same_weights(out)


def _assert_same_weights(out: Path) -> None:
    states = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def _fit_with_lightning_ddp(tiny_zoo: TinyZoo, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the Lightning DDP script (rank 1 is started by Lightning itself); asserts it succeeded."""
    script = tmp_path / "fit_ddp.py"
    script.write_text(textwrap.dedent(_PRELUDE + _LIGHTNING))
    _write_entry(tiny_zoo, tmp_path)
    done = subprocess.run(
        [sys.executable, str(script), str(tiny_zoo.folder), str(tmp_path / "cache"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("mode", ["barrier"])
def test_two_processes_load_at_once(mode: str, hub: HubServer, tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    script = tmp_path / "load_twice.py"
    script.write_text(textwrap.dedent(_PRELUDE + _TORCH_DISTRIBUTED))
    _write_entry(tiny_zoo, tmp_path)
    port = str(_free_port())
    args = [sys.executable, str(script), str(tiny_zoo.folder), str(tmp_path / "cache"), str(tmp_path), mode]
    procs = [
        subprocess.Popen(
            args,
            env=_env(
                hub, tiny_zoo, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (1, 0)  # rank 1 first: it must wait for rank 0's download
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    _assert_one_download_and_same_weights(hub, tmp_path)


@pytest.mark.slow  # two Lightning processes
def test_lightning_ddp_ranks_share_one_download(hub: HubServer, tiny_zoo: TinyZoo, tmp_path: Path) -> None:
    _fit_with_lightning_ddp(tiny_zoo, tmp_path, _env(hub, tiny_zoo, MASTER_PORT=str(_free_port())))
    _assert_one_download_and_same_weights(hub, tmp_path)


@pytest.mark.slow  # two Lightning processes
def test_lightning_ddp_ranks_fall_back_to_the_shipped_copy_at_once_when_the_hub_is_down(
    hub: HubServer, tiny_zoo: TinyZoo, tmp_path: Path
) -> None:
    import time

    hub.stop()
    # Rank 1 starts before any process group exists and would poll the cache for up to LIT_DEEP_HUB_WAIT.
    env = _env(hub, tiny_zoo, MASTER_PORT=str(_free_port()), LIT_DEEP_HUB_WAIT="240")
    env[SHIPPED_DIR_ENV] = str(tiny_zoo.folder.parent)
    started = time.monotonic()
    done = _fit_with_lightning_ddp(tiny_zoo, tmp_path, env)
    assert time.monotonic() - started < 120  # not the 240 s wait for a download that cannot happen
    assert done.stderr.count("using the copy shipped with lit_deep") == 1  # rank 0's log line only
    _assert_same_weights(tmp_path)
