"""Shared fixtures and the suite's parallel layout.

Costly things (checkpoints, exports) are built once per test run and shared on disk: under
pytest-xdist every worker asks for them, one builds under a file lock, the others wait and
reuse the finished directory. Nothing here imports torch, so collecting and running the
torch-free tests stays light (tests.models holds the torch-side helpers).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
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
    """torch's thread count for this test process, decided once, here.

    On a busy 2-core machine torch's default two threads made one network call 149 ms
    against 14.5 ms with one; on a quiet one two threads are 1.8x faster (a batch-30 call:
    56 vs 104 ms). So: this process's share of the cores (all of them, divided among
    pytest-xdist's workers) while the machine is quiet (under a quarter of the CPU busy),
    else one. SPRITEGEN_TEST_TORCH_THREADS overrides the rule.
    """
    if os.environ.get("SPRITEGEN_TEST_TORCH_THREADS"):
        return max(1, int(os.environ["SPRITEGEN_TEST_TORCH_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    return share if _busy_fraction() < 0.25 else 1


# Set before anything imports torch (conftest is imported first): torch sizes its intra-op
# pool from OMP_NUM_THREADS, and the subprocesses the tests start inherit it.
TORCH_THREADS = _torch_threads()
os.environ["OMP_NUM_THREADS"] = str(TORCH_THREADS)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group into the node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep what shares a costly fixture or cache on one xdist worker (`--dist loadgroup`): a
    test that declares `xdist_group` keeps it; the parity matrix groups by case (a case's
    reference run and path runs are computed once, tests/parity_matrix.py's Matrix); every
    other test groups by module, because a module-scoped fixture (a Triton server, a browser
    page, a benchmark run) is made once per worker that runs the module: spread over two
    workers, each would start its own."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        group = f"parity-{case.id}" if hasattr(case, "id") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _fresh_wandb_settings() -> Iterator[None]:
    """wandb caches its settings (WANDB_DIR, WANDB_MODE) in a process-wide singleton at the
    first run; tearing it down after each test lets every W&B test see its own tmp dir."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


# ---------------------------------------------------------------- built once per run
def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every process of this test run shares: xdist workers each get their own
    basetemp under one run folder (their parent); a plain run has just its basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `<run root>/shared/<name>`, filled by `build(folder)` in the first process
    to ask and reused by the rest (a file lock keeps the others waiting meanwhile). It is
    built under a temporary name and renamed when complete, so it is whole or absent."""
    from filelock import FileLock

    root = _run_root(tmp_path_factory) / "shared"
    root.mkdir(exist_ok=True)
    path = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not path.is_dir():
            partial = root / f"{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # a build that failed earlier in this run
            partial.mkdir()
            build(partial)
            partial.rename(path)
    return path


def _write_course_checkpoint(folder: Path, run_config: bool = False) -> None:
    """context_model.pth (random weights, course format), and with run_config the run's config.json."""
    import torch

    from tests.models import COURSE_RUN_CONFIG, course_state_dict, make_random_model

    torch.save(course_state_dict(make_random_model()), folder / "context_model.pth")
    if run_config:
        (folder / "config.json").write_text(json.dumps(COURSE_RUN_CONFIG))


@pytest.fixture(scope="session")
def course_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course-format checkpoint file (random weights, no shortcut key); never alter it."""
    return built_once(tmp_path_factory, "course", _write_course_checkpoint) / "context_model.pth"


@pytest.fixture(scope="session")
def course_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same checkpoint as a downloaded model artifact: context_model.pth + the run's
    config.json (hyperparameters only there, as the course saves them); never alter it."""
    return built_once(tmp_path_factory, "course_run", lambda folder: _write_course_checkpoint(folder, run_config=True))


def _export_once(tmp_path_factory: pytest.TempPathFactory, name: str, source: Path | None, **options: bool) -> Path:
    """One validated export via the exporter's Python API, shared by every worker of the run."""
    def build(folder: Path) -> None:
        from spritegen.export.exporter import export

        export(source, folder / "export", **options)

    return built_once(tmp_path_factory, name, build) / "export"


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo checkpoint (load_model(None)) exported once per run, with
    unet_fp16.onnx and unet_int8.onnx; never alter it (copy it: tests.runtime_support)."""
    return _export_once(tmp_path_factory, "bundled_export", None, fp16=True, int8=True)


@pytest.fixture(scope="session")
def course_export(tmp_path_factory: pytest.TempPathFactory, course_run_dir: Path) -> Path:
    """course_run_dir (no shortcut key, hyperparameters only in config.json) exported once per
    run, with unet_fp16.onnx; never alter it (copy it first: tests.runtime_support.copy_export)."""
    return _export_once(tmp_path_factory, "course_export", course_run_dir, fp16=True)


def _write_tiny_export(folder: Path) -> None:
    from spritegen.export.exporter import export
    from tests.models import write_tiny_checkpoint

    write_tiny_checkpoint(folder / "context_model.pth")
    # --fit with a short bound: the export carries a fitted few-step sampler like the demo's, made by
    # the exporter's own fitting path (its tables' quality on a random model means nothing)
    export(folder / "context_model.pth", folder / "export", fp16=True, int8=True, fit=True, fit_seconds=5)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A validated export of a tiny random ContextUnet (tests.models.TINY_CONFIG) with unet_fp16.onnx,
    unet_int8.onnx and a fitted few-step sampler (--fit), built once per run; never alter it."""
    return built_once(tmp_path_factory, "tiny_export", _write_tiny_export) / "export"


@pytest.fixture(scope="session")
def export_dir(tiny_export: Path) -> Path:
    """The export the CLI, C++, browser, serving and runtime-input tests sample from: every
    graph and file of an export, on the tiny model (shared: never alter it). Modules that
    compare with the demo's eager model take bundled_sampler (test_runtime.py,
    test_precisions.py); test_cpp.py needs the demo's unclipped DDPM sprites and
    test_benchmarks.py the course model's speed, so they override this fixture."""
    return tiny_export


@pytest.fixture(scope="session")
def sampler(export_dir: Path) -> "Sampler":
    """One CPU Sampler on `export_dir`, shared by the session's tests."""
    from spritegen.runtime import Sampler

    return Sampler.load(export_dir, provider="cpu")


@pytest.fixture(scope="session")
def bundled_sampler(bundled_export: Path) -> "Sampler":
    """One CPU Sampler on bundled_export, for tests comparing with the demo's eager model."""
    from spritegen.runtime import Sampler

    return Sampler.load(bundled_export, provider="cpu")
