"""Shared fixtures. Session-scoped where building is costly, so the suite fits CI's budget."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spritegen.contract import ModelConfig
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet
from spritegen.runtime import Sampler



def _busy_fraction(seconds: float = 0.3) -> float:
    """The fraction of all CPU time spent busy over the next `seconds` (Linux /proc/stat;
    0 elsewhere): the machine's load now, not the load average's minute-long memory of,
    say, the C++ build CI ran just before the tests."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def _torch_threads() -> int:
    """torch's thread count for the whole suite, decided once, here.

    On a busy 2-core machine torch's default two threads made one network call 149 ms
    against 14.5 ms with one, and the suite then ran for ~10 minutes; on a quiet one two
    threads are 1.8x faster (a batch-30 call: 56 vs 104 ms). So: every core this process
    may use while the machine is quiet (under a quarter of the CPU busy), else one.
    SPRITEGEN_TEST_TORCH_THREADS overrides the rule.
    """
    if os.environ.get("SPRITEGEN_TEST_TORCH_THREADS"):
        return max(1, int(os.environ["SPRITEGEN_TEST_TORCH_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if _busy_fraction() < 0.25 else 1


TORCH_THREADS = _torch_threads()
torch.set_num_threads(TORCH_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))  # subprocesses the tests start


@pytest.fixture(autouse=True)
def _fresh_wandb_settings() -> Iterator[None]:
    """wandb caches its settings (WANDB_DIR, WANDB_MODE) in a process-wide singleton at the
    first run; tearing it down after each test lets every W&B test see its own tmp dir."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


def make_random_model(seed: int = 1234, config: ModelConfig = ModelConfig()) -> ContextUnet:
    """A ContextUnet with seeded random weights and non-trivial BatchNorm statistics.

    Default BatchNorm stats (mean 0, var 1) would hide a wrong folding of BN into the
    convolutions, so they are randomised too.
    """
    torch.manual_seed(seed)
    model = ContextUnet.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return model.eval()


def course_state_dict(model: ContextUnet) -> dict[str, torch.Tensor]:
    """The state_dict as the course saves it: no pinned shortcut keys."""
    return {k: v for k, v in model.state_dict().items() if k not in SHORTCUT_KEYS}


@pytest.fixture(scope="session")
def course_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course-format checkpoint file (random weights, no shortcut key)."""
    path = tmp_path_factory.mktemp("course") / "context_model.pth"
    torch.save(course_state_dict(make_random_model()), path)
    return path


# A course run's config as W&B stores it (the training lesson's SimpleNamespace): the
# hyperparameters live here, never in the .pth (the course saves a bare state_dict).
COURSE_RUN_CONFIG = {"n_epoch": 32, "batch_size": 100, "lrate": 1e-3, "timesteps": 500, "beta1": 1e-4,
                     "beta2": 0.02, "height": 16, "n_feat": 64, "n_cfeat": 5, "device": "cuda",
                     "save_dir": "./data/weights/"}


@pytest.fixture(scope="session")
def course_run_dir(tmp_path_factory: pytest.TempPathFactory, course_checkpoint: Path) -> Path:
    """course_checkpoint as a downloaded model artifact: context_model.pth + the run's config.json."""
    directory = tmp_path_factory.mktemp("course_run")
    shutil.copy(course_checkpoint, directory / "context_model.pth")
    (directory / "config.json").write_text(json.dumps(COURSE_RUN_CONFIG))
    return directory


def _export_once(tmp_path_factory: pytest.TempPathFactory, name: str, source: Path | None) -> Path:
    """One validated export (with unet_fp16.onnx and unet_int8.onnx) via the exporter's Python API."""
    from spritegen.export.exporter import export

    return export(source, tmp_path_factory.mktemp(name) / "export", fp16=True, int8=True).directory


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo checkpoint (load_model(None)) exported ONCE per session; never alter it."""
    return _export_once(tmp_path_factory, "bundled_export", None)


@pytest.fixture(scope="session")
def course_export(tmp_path_factory: pytest.TempPathFactory, course_run_dir: Path) -> Path:
    """course_run_dir (no shortcut key, hyperparameters only in config.json) exported ONCE per
    session; never alter it (copy it first: tests.runtime_support.copy_export)."""
    return _export_once(tmp_path_factory, "course_export", course_run_dir)


@pytest.fixture(scope="session")
def export_dir(bundled_export: Path) -> Path:
    """The export the runtime, CLI and C++ tests sample from: bundled_export (shared: never
    alter it). A module measuring another export overrides it (test_benchmarks.py)."""
    return bundled_export


@pytest.fixture(scope="session")
def sampler(export_dir: Path) -> Sampler:
    """One CPU Sampler on `export_dir`, shared by the session's tests."""
    return Sampler.load(export_dir, provider="cpu")
