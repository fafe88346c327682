"""The C++ sampler's few-step samplers (dpmpp, fast) beyond parity (tests/test_cpp.py has that):
the manifest's "fast" section checked as the Python runtime checks it
(runtime/manifest_fields.py fast_sampler), an export without one, the usage errors, and a game
that ships only solver_step.onnx.

Every refusal is one `error:` line, a non-zero exit and no output file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from spritegen.contract import FAST_KEY, GRAPHS, MANIFEST_FILE
from spritegen.runtime import Sampler, limits
from spritegen.errors import ExportDirError
from tests.cpp_support import cpp_binary, run_cpp, sample_cpp  # noqa: F401 (cpp_binary: a fixture)
from tests.test_cpp_checks import edited, refused

SOLVER = GRAPHS["solver_step"].file


@pytest.fixture(scope="session")
def export_dir(bundled_export: Path) -> Path:
    """The demo's export, which ships the fitted few-step sampler (conftest's tiny export has none)."""
    return bundled_export


def _fast(m: dict[str, Any]) -> dict[str, Any]:
    return m[FAST_KEY]


# Each edit of the fast section, and what the one error line names.
FAST_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown solver": (lambda m: _fast(m).update(solver="unipc"), "'unipc'"),
    "eta above 1": (lambda m: _fast(m).update(eta=1.5), f"'{FAST_KEY}.eta'"),
    "eta a string": (lambda m: _fast(m).update(eta="1"), f"'{FAST_KEY}.eta'"),
    "table not falling": (lambda m: _fast(m)["indices"].update({"4": [500, 300, 382, 149, 0]}),
                          f"'{FAST_KEY}.indices[4]'"),
    "table not ending at 0": (lambda m: _fast(m)["indices"].update({"4": [500, 382, 272, 149, 1]}),
                              f"'{FAST_KEY}.indices[4]'"),
    "key not its length": (lambda m: _fast(m)["indices"].update({"3": [500, 382, 272, 149, 0]}),
                           f"'{FAST_KEY}.indices[3]'"),
    "default_n without a table": (lambda m: _fast(m).update(default_n=7), f"'{FAST_KEY}.default_n'"),
    "too many tables": (lambda m: _fast(m).update(indices={str(n): [500 * (n - k) // n for k in range(n + 1)]
                                                          for n in range(1, limits.MAX_FAST_TABLES + 2)}),
                        f"'{FAST_KEY}.indices'"),
    "not an object": (lambda m: m.update({FAST_KEY: [6]}), f"'{FAST_KEY}'"),
}


@pytest.mark.parametrize("edit", FAST_EDITS)
def test_bad_fast_section_is_refused_like_python(cpp_binary: Path, export_dir: Path, tmp_path: Path,
                                                 edit: str) -> None:
    """The C++ program refuses exactly what Python's manifest reader refuses, naming the field."""
    change, needle = FAST_EDITS[edit]
    folder = edited(export_dir, tmp_path / "export", change)
    with pytest.raises(ExportDirError):
        Sampler.load(folder, provider="cpu", threads=1)
    out = tmp_path / "x.npy"
    refused(run_cpp(cpp_binary, folder, "--sampler", "fast", "--out-npy", str(out)), needle, code=1)
    assert not out.exists()


def test_export_without_fast_section(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """No fit: fast says how to get one, dpmpp and ddim still run (a fit-less export is valid)."""
    folder = edited(export_dir, tmp_path / "export", lambda m: m.pop(FAST_KEY))
    refused(run_cpp(cpp_binary, folder, "--sampler", "fast", "--out-npy", str(tmp_path / "x.npy")),
            "spritegen-export --fit", "dpmpp", code=1)
    for sampler in ("dpmpp", "ddim"):
        sample_cpp(cpp_binary, folder, tmp_path / f"{sampler}.npy", "--sampler", sampler, "--n", "3")


def test_usage_errors_of_the_few_step_samplers(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """Usage errors exit 2 and say what is allowed: fast's fitted n, fast without --eta."""
    fitted = json.loads((export_dir / MANIFEST_FILE).read_text())[FAST_KEY]["indices"]
    out = ("--out-npy", str(tmp_path / "x.npy"))
    refused(run_cpp(cpp_binary, export_dir, "--sampler", "fast", "--n", "7", *out),
            f"fitted for n in {', '.join(sorted(fitted, key=int))} network calls", "dpmpp", code=2)
    refused(run_cpp(cpp_binary, export_dir, "--sampler", "fast", "--eta", "1", *out), "--sampler dpmpp --eta", code=2)
    refused(run_cpp(cpp_binary, export_dir, "--sampler", "euler", *out), "ddim, ddpm, dpmpp or fast", code=2)
    refused(run_cpp(cpp_binary, export_dir, "--sampler", "dpmpp", "--graph", "loop", *out), "DDIM only", code=2)
    assert not (tmp_path / "x.npy").exists()


def test_a_game_with_only_solver_step_onnx(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """manifest.json plus solver_step.onnx run dpmpp and fast (from a directory and from memory,
    the full export's sprites byte for byte, the step count in the latency record); a run needing
    another graph names it."""
    folder = tmp_path / "solver_only"
    folder.mkdir()
    shutil.copy(export_dir / MANIFEST_FILE, folder)
    (folder / SOLVER).symlink_to(export_dir / SOLVER)
    for args in (("--sampler", "fast", "--class", "hero,spell", "--seed", "4,5"),
                 ("--sampler", "dpmpp", "--n", "5", "--eta", "1", "--class", "food", "--seed", "8")):
        want = sample_cpp(cpp_binary, export_dir, tmp_path / "want.npy", *args)
        for extra in ((), ("--from-memory",)):
            got = sample_cpp(cpp_binary, folder, tmp_path / "got.npy", *args, *extra)
            assert got.tobytes() == want.tobytes(), (args, extra)
    default_n = json.loads((export_dir / MANIFEST_FILE).read_text())[FAST_KEY]["default_n"]
    proc = run_cpp(cpp_binary, folder, "--sampler", "fast", "--repeat", "1", "--from-memory")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["graph"] == "solver_step" and record["n"] == default_n
    refused(run_cpp(cpp_binary, folder, "--n", "5", "--graph", "step", "--out-npy", str(tmp_path / "x.npy")),
            "ddim_step.onnx", "missing")


def test_fewstep_benchmark_records_each_sampler(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """benchmarks.cpp_fewstep (issue 18's C++ latency figures), one quick round: every sampler on
    every thread setting, the graph and call count the program itself reports, ratios that are
    the medians' own, load averages recorded; a missing output folder refused before measuring."""
    from benchmarks import cpp_fewstep

    out = tmp_path / "fewstep.json"
    assert cpp_fewstep.main(["--export-dir", str(export_dir), "--binary", str(cpp_binary), "--rounds", "1",
                             "--reps", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    default_n = json.loads((export_dir / MANIFEST_FILE).read_text())[FAST_KEY]["default_n"]
    want = {"ddim25": (25, "ddim_loop"), "ddim25-step": (25, "ddim_step"), "dpmpp8": (8, "solver_step"),
            "fast": (default_n, "solver_step")}
    figures = report["figures"]
    assert set(figures) == {f"{path}/{key}" for path in cpp_fewstep.PATHS for key in want}
    for name, figure in figures.items():
        path, key = name.split("/")
        assert (figure["calls"], figure["graph"]) == want[key], name
        assert figure["median_ms"] > 0 and len(figure["load_1min"]) == 2
        base = figures[f"{path}/ddim25"]["median_ms"]
        assert report["speedup_over"]["ddim25"][name] == pytest.approx(base / figure["median_ms"])
    assert "| 1thread | fast | solver_step |" in out.with_suffix(".md").read_text()
    assert cpp_fewstep.main(["--export-dir", str(export_dir), "--binary", str(cpp_binary),
                             "--out", str(tmp_path / "missing" / "x.json")]) == 2
