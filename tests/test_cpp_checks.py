"""The C++ sampler's checks of what it is handed, through the real program (issue 19): an
edited manifest against the graphs' own metadata, bounded .npy and manifest numbers, the
guidance bound and non-finite results, non-regular graph files, colliding outputs, limits
that are Python's (never retyped), loading only the graphs a run uses, and the documented
copy list compiling on its own.

Every refusal is one `error:` line, a non-zero exit and no output file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from spritegen import contract
from spritegen.runtime import limits
from tests.cpp_support import BUILD, REPO, cpp_binary, run_cpp, sample_cpp  # noqa: F401 (cpp_binary: a fixture)
from tests.runtime_support import link_export

DOC = REPO / "docs" / "cpp.md"
SOURCES = REPO / "examples" / "cpp"


def refused(proc: subprocess.CompletedProcess, *needles: str, code: int | None = None) -> None:
    """One `error:` line naming every needle, a non-zero exit (`code` when given)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and (code is None or proc.returncode == code), (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(n in lines[0] for n in needles), (needles, lines[0])


def edited(export: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A linked copy of `export` whose manifest.json went through `edit` (the graphs untouched)."""
    manifest = json.loads((export / "manifest.json").read_text())
    edit(manifest)
    return link_export(export, folder, manifest)


def _swap_classes(m: dict[str, Any]) -> None:
    names = m["class_names"]
    names[0], names[2] = names[2], names[0]  # hero <-> food


# Each edit of the manifest, and the metadata key whose disagreement refuses it.
EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "class names swapped": (_swap_classes, "class_names"),
    # (the fitted tables fall from the old T: without the section, the graphs' metadata must refuse it)
    "T edited": (lambda m: (m["schedule"].update(timesteps=250), m.pop(contract.FAST_KEY, None)), "schedule"),
    "beta2 edited": (lambda m: m["schedule"].update(beta2=0.03), "schedule"),
    "n_feat edited": (lambda m: m["model"]["hyperparameters"].update(n_feat=32), "hyperparameters"),
    "other checkpoint": (lambda m: m["provenance"].update(checkpoint_sha256="0" * 64), "checkpoint"),
}
# Each graph a run can use: the options that make the CLI use it.
RUNS = {"ddim_loop": ("--graph", "loop"), "ddim_step": ("--graph", "step", "--n", "5"),
        "ddpm_step": ("--sampler", "ddpm"), "solver_step": ("--sampler", "dpmpp", "--n", "3")}


@pytest.mark.parametrize("memory", [False, True], ids=["directory", "from-memory"])
@pytest.mark.parametrize("edit", EDITS)
def test_edited_manifest_is_refused_by_every_graph_a_run_uses(cpp_binary: Path, export_dir: Path, tmp_path: Path,
                                                              edit: str, memory: bool) -> None:
    """Swapped class names must not give a food sprite for --class hero, and an edited T must
    not change the steps: whichever graph the run uses, its metadata refuses the manifest."""
    change, key = EDITS[edit]
    folder = edited(export_dir, tmp_path / "export", change)
    for graph, args in RUNS.items():
        out = tmp_path / f"{graph}.npy"
        proc = run_cpp(cpp_binary, folder, "--class", "hero", "--out-npy", str(out), *args,
                       *(["--from-memory"] if memory else []))
        refused(proc, key, f"{graph}.onnx", code=1)
        assert not out.exists()


def test_edited_loop_step_count_is_refused(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """ddim_loop_steps 25 -> 50 would make the default n 50 and run the 25-step loop graph."""
    folder = edited(export_dir, tmp_path / "export", lambda m: m.update(ddim_loop_steps=50))
    refused(run_cpp(cpp_binary, folder, "--class", "hero", "--out-npy", str(tmp_path / "x.npy")),
            "ddim_loop_steps", "ddim_loop.onnx", code=1)
    refused(run_cpp(cpp_binary, folder, "--class", "hero", "--graph", "loop", "--n", "25",
                    "--out-npy", str(tmp_path / "x.npy")), "--graph loop needs --n 50", code=2)


def test_swapped_graph_file_is_refused(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """ddpm_step.onnx copied over ddim_step.onnx and rehashed in the manifest: its own metadata
    says which graph it is."""
    import hashlib

    manifest = json.loads((export_dir / "manifest.json").read_text())
    data = (export_dir / "ddpm_step.onnx").read_bytes()
    entry = manifest["files"]["ddim_step.onnx"]
    digest = hashlib.sha256(data).hexdigest()
    manifest["files"]["ddim_step.onnx"] = {**entry, "sha256": digest} if isinstance(entry, dict) else digest
    folder = link_export(export_dir, tmp_path / "export", manifest)
    (folder / "ddim_step.onnx").unlink()
    (folder / "ddim_step.onnx").symlink_to(export_dir / "ddpm_step.onnx")
    refused(run_cpp(cpp_binary, folder, "--graph", "step", "--n", "5", "--out-npy", str(tmp_path / "x.npy")),
            "'ddpm_step' graph", "swapped", code=1)


# Manifest numbers beyond the Python runtime's bounds (runtime/limits.py): each refused by name.
HUGE = {
    "model.hyperparameters.height": lambda m: m["model"]["hyperparameters"].update(height=10**6),
    "model.hyperparameters.n_cfeat": lambda m: m["model"]["hyperparameters"].update(n_cfeat=10**6),
    "model.hyperparameters.in_channels": lambda m: m["model"]["hyperparameters"].update(in_channels=10**6),
    "schedule.timesteps": lambda m: m["schedule"].update(timesteps=10**6),
    "ddim_loop_steps": lambda m: m.update(ddim_loop_steps=501),  # above T
}


@pytest.mark.parametrize("field", HUGE)
def test_manifest_numbers_are_bounded_as_in_python(cpp_binary: Path, export_dir: Path, tmp_path: Path,
                                                   field: str) -> None:
    folder = edited(export_dir, tmp_path / "export", HUGE[field])
    refused(run_cpp(cpp_binary, folder, "--class", "hero", "--out-npy", str(tmp_path / "x.npy")), f"'{field}'",
            code=1)


def _npy(path: Path, shape: str, header_pad: int = 0, data: bytes = b"") -> Path:
    """A hand-made float32 .npy with any header (np.save refuses the hostile ones)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode() + b" " * header_pad
    header += b" " * ((64 - (12 + len(header) + 1) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + data)
    return path


def test_noise_file_header_and_shape_are_checked_before_allocating(cpp_binary: Path, export_dir: Path,
                                                                   tmp_path: Path) -> None:
    """A 128-byte .npy of shape (2^31, 0) asked for 43 GB; a 60 kB header overflowed the stack."""
    image = 3 * 16 * 16 * 4
    cases = {
        "shape": (_npy(tmp_path / "huge.npy", "(2147483648, 0)"), "holds shape [2147483648, 0]"),
        "batch above MAX_BATCH": (_npy(tmp_path / "many.npy", f"({limits.MAX_BATCH + 1}, 3, 16, 16)"),
                                  f"1 <= B <= {limits.MAX_BATCH}"),
        "header": (_npy(tmp_path / "long.npy", "(1, 3, 16, 16)", 60_000, b"\0" * image), "header of"),
        "size": (_npy(tmp_path / "short.npy", "(2, 3, 16, 16)", 0, b"\0" * image), "data bytes do not match"),
    }
    out = tmp_path / "never.npy"
    for name, (path, needle) in cases.items():
        refused(run_cpp(cpp_binary, export_dir, "--noise", str(path), "--out-npy", str(out)), needle, code=2)
    step = _npy(tmp_path / "step.npy", f"({2**31}, 1, 3, 16, 16)")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    refused(run_cpp(cpp_binary, export_dir, "--sampler", "ddpm", "--noise", str(tmp_path / "x.npy"), "--step-noise",
                    str(step), "--out-npy", str(out)), f"[{contract.ScheduleConfig().timesteps}, 1, 3, 16, 16]",
            code=2)
    assert not out.exists()


def test_guidance_is_bounded_and_non_finite_sprites_are_refused(cpp_binary: Path, export_dir: Path,
                                                                 tmp_path: Path) -> None:
    """--guidance 3.4e38 exited 0 with NaN sprites: refused by limits.MAX_GUIDANCE; sprites that
    overflow within the bounds (x_T of 3e38) are refused as the Python runtime's check_finite does."""
    out = tmp_path / "never.npy"
    refused(run_cpp(cpp_binary, export_dir, "--guidance", "3.4e38", "--out-npy", str(out)), "guidance",
            f"0..{limits.MAX_GUIDANCE:g}", code=2)
    refused(run_cpp(cpp_binary, export_dir, "--guidance", str(limits.MAX_GUIDANCE * 1.01), "--out-npy", str(out)),
            "guidance", code=2)
    refused(run_cpp(cpp_binary, export_dir, "--class", "hero", "--blend",
                    f"food={limits.MAX_CONTEXT_WEIGHT * 2:g}", "--out-npy", str(out)), "weight of 'food'", code=2)
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 3e38, np.float32))
    refused(run_cpp(cpp_binary, export_dir, "--noise", str(tmp_path / "x.npy"), "--graph", "step", "--n", "2",
                    "--out-npy", str(out)), "NaN or Inf", code=2)
    assert not out.exists()
    edge = sample_cpp(cpp_binary, export_dir, tmp_path / "edge.npy", "--class", "hero", "--n", "2",
                      "--guidance", f"{limits.MAX_GUIDANCE:g}")
    assert np.isfinite(edge).all()


@pytest.mark.parametrize("memory", [False, True], ids=["directory", "from-memory"])
def test_graph_that_is_not_a_regular_file_is_named(cpp_binary: Path, export_dir: Path, tmp_path: Path,
                                                   memory: bool) -> None:
    """A FIFO or a link to /dev/zero in place of a graph was reported "missing"."""
    for kind, make in (("a FIFO", os.mkfifo), ("a character device", lambda p: p.symlink_to("/dev/zero"))):
        folder = link_export(export_dir, tmp_path / kind.replace(" ", "_"))
        (folder / "ddim_loop.onnx").unlink()
        make(folder / "ddim_loop.onnx")
        refused(run_cpp(cpp_binary, folder, "--class", "hero", "--out-npy", str(tmp_path / "x.npy"),
                        *(["--from-memory"] if memory else [])), f"is {kind}, not a regular file")


def test_outputs_on_one_path_are_refused(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.npy"
    for flags in (("--out-npy", "--out-rgba"), ("--out", "--out-rgba")):
        path = str(same.with_suffix(".png" if flags[0] == "--out" else ".npy"))
        relative = os.path.relpath(path)
        proc = run_cpp(cpp_binary, export_dir, "--class", "hero", flags[0], path, flags[1], f"./{relative}")
        refused(proc, flags[0], flags[1], "same file", code=2)
    assert not list(tmp_path.iterdir())


def test_limits_are_pythons(cpp_binary: Path) -> None:
    """The C++ bounds come from runtime/limits.py and spritegen/contract.py (a generated header),
    not C++ literals: the built program's values equal Python's, and the committed header is
    what the generator writes now."""
    proc = subprocess.run([str(cpp_binary), "limits"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = {"kMaxBatch": limits.MAX_BATCH, "kThreadsPerCore": limits.THREADS_PER_CORE,
            "kMaxTimesteps": limits.MAX_TIMESTEPS, "kMaxHeight": contract.MODEL_LIMITS["height"][1],
            "kMaxChannels": contract.MODEL_LIMITS["in_channels"][1], "kMaxClasses": contract.MODEL_LIMITS["n_cfeat"][1],
            "kMaxFeatures": contract.MODEL_LIMITS["n_feat"][1], "kMaxClassName": limits.MAX_CLASS_NAME,
            "kMaxGraphBytes": limits.MAX_GRAPH_BYTES, "kMaxManifestBytes": limits.MAX_MANIFEST_BYTES,
            "kMaxScale": limits.MAX_SCALE, "kDdimDefaultSteps": contract.DDIM_DEFAULT_STEPS,
            "kDpmppDefaultSteps": contract.DPMPP_DEFAULT_STEPS, "kMaxFastTables": limits.MAX_FAST_TABLES,
            "kMaxGuidance": limits.MAX_GUIDANCE, "kMaxContextWeight": limits.MAX_CONTEXT_WEIGHT,
            "kManifestFormat": contract.MANIFEST_FORMAT, "kFastKey": contract.FAST_KEY}
    assert json.loads(proc.stdout) == want
    generated = subprocess.run([sys.executable, str(SOURCES / "gen_limits.py")], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    assert (SOURCES / "contract_limits.hpp").read_text() == generated, "run examples/cpp/gen_limits.py"
    # the rules' own literals are gone: threads, batch, guidance, scale come from the header
    sources = "".join((SOURCES / name).read_text() for name in ("main.cpp", "cli_args.cpp", "sampler.cpp", "manifest.cpp"))
    assert not re.search(r"\b(4096|65536|1000000|1e6f?)\b", sources)


def test_only_the_graphs_a_run_uses_are_needed(cpp_binary: Path, export_dir: Path, tmp_path: Path) -> None:
    """An export holding just ddim_step.onnx samples by step (from a directory and from memory,
    the same sprites as the full export); a run needing another graph names it."""
    folder = tmp_path / "step_only"
    folder.mkdir()
    shutil.copy(export_dir / "manifest.json", folder)
    (folder / "ddim_step.onnx").symlink_to(export_dir / "ddim_step.onnx")
    args = ("--class", "hero,spell", "--seed", "4,5", "--graph", "step", "--n", "5")
    want = sample_cpp(cpp_binary, export_dir, tmp_path / "want.npy", *args)
    for extra in ((), ("--from-memory",)):
        got = sample_cpp(cpp_binary, folder, tmp_path / "got.npy", *args, *extra)
        assert got.tobytes() == want.tobytes(), extra
        refused(run_cpp(cpp_binary, folder, "--sampler", "ddpm", "--out-npy", str(tmp_path / "x.npy"), *extra),
                "ddpm_step.onnx", "missing")


# An engine's use of the lifted files (docs/cpp.md, "In an engine"): linking it proves every
# function it calls is defined in the listed files.
ENGINE = """#include "sampler.hpp"
int main(int argc, char** argv) {
  std::unique_ptr<spritegen::Sampler> sampler;
  spritegen::Status st = argc > 2 ? spritegen::Sampler::from_memory(argv[1], {{"ddim_step.onnx", argv[2]}}, {}, &sampler)
                                  : spritegen::Sampler::open(argc > 1 ? argv[1] : ".", {}, &sampler);
  spritegen::Options options;
  options.use_loop = false;  // ddim_step.onnx: the one graph handed over
  if (st.ok()) st = sampler->warm_up(1, options);
  spritegen::Tensor context({1, st.ok() ? sampler->manifest().n_cfeat : 1});
  if (st.ok()) st = sampler->context_row({{"hero", 1.0f}}, &context.data);
  spritegen::Tensor sprite;
  if (st.ok()) st = sampler->generate(context, uint64_t{42}, options, &sprite);
  spritegen::Options fast;  // the fitted few-step sampler: how many network calls it makes
  fast.method = spritegen::Method::fast;
  int calls = 0;
  if (st.ok()) st = sampler->calls(fast, &calls);
  return st.ok() && !spritegen::to_rgba8(sprite).empty() ? 0 : 1;
}
"""


def _documented_copy_list() -> list[str]:
    """The files docs/cpp.md tells an engine to copy: the ```text block after its marker line."""
    text = DOC.read_text()
    found = re.search(r"<!-- engine-files -->\s*```text\n(.*?)```", text, re.S)
    assert found, f"{DOC} has no <!-- engine-files --> block"
    return found.group(1).split()


def test_documented_copy_list_compiles_alone(cpp_binary: Path, tmp_path: Path) -> None:
    """Exactly the files docs/cpp.md lists, copied to an empty folder with a tiny CMakeLists and an
    engine's calls, compile (-fno-exceptions, the stricter build) and link with only ONNX Runtime
    and nlohmann/json, and none of them includes a POSIX-only header."""
    files = _documented_copy_list()
    assert "sampler.hpp" in files and "main.cpp" not in files and "npy.cpp" not in files
    project = tmp_path / "engine"
    project.mkdir()
    for name in files:
        shutil.copy(SOURCES / name, project / name)
        posix = re.findall(r"#include\s*<(unistd\.h|fcntl\.h|sys/[^>]+|dirent\.h|pthread\.h)>",
                           (project / name).read_text())
        assert not posix, f"{name} includes POSIX-only {posix}"
    sources = " ".join(name for name in files if name.endswith(".cpp"))
    (project / "engine.cpp").write_text(ENGINE)
    lib = BUILD / "ort" / "lib" / "libonnxruntime.so"
    (project / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.18)
project(engine_copy LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(nlohmann_json 3.2 REQUIRED)
add_executable(engine engine.cpp {sources})
target_include_directories(engine PRIVATE "{BUILD / 'ort' / 'include'}")
target_link_libraries(engine PRIVATE "{lib}" nlohmann_json::nlohmann_json)
target_compile_options(engine PRIVATE -fno-exceptions -Wall -Wextra -Werror)
set_source_files_properties(noise.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
""")
    assert (BUILD / "ort" / "include" / "onnxruntime_c_api.h").is_file(), "run .ci/setup_cpp.sh first"
    for step in (["cmake", "-S", str(project), "-B", str(project / "build"), "-DCMAKE_BUILD_TYPE=Release"],
                 ["cmake", "--build", str(project / "build"), "-j", "2"]):
        proc = subprocess.run(step, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
