"""Progressive distillation (training/distill*.py) and the student's export (export/student.py):
the target lands where the teacher's two steps land, a round lowers the loss, the run writes its
files and "distillation" section, the export's "fast" section runs the student at first order in
the runtime (equal to the eager DDIM on its indices) and the C++ sampler, and every mismatch
(another sampler or call count on a student's export, a student's config beside other weights,
--fit on a student, a student teacher on another grid) is one line and exit 2.

One tiny student (n_feat 8, one round 8 -> 4 steps of a few updates) is distilled and exported
once per run (`tiny_student`); everything else reuses it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spritegen.contract import CHECKPOINT_FILE, FAST_KEY, MANIFEST_FILE, ScheduleConfig, dpmpp_indices
from spritegen.export.checkpoint import load_checkpoint
from spritegen.export.reference import sample_ddim
from spritegen.export.student import STUDENT_ETA
from spritegen.files import sha256_file
from spritegen.runtime import Sampler
from spritegen.training.distill import Batch, Coefficients, RoundTrainer, ddim_step, pd_target
from spritegen.training.distill_config import (DISTILLATION_KEY, LOG_FILE, DistillConfig, DistillUsageError,
                                               halvings)
from tests.conftest import built_once
from tests.models import TINY_CONFIG, make_random_model, write_tiny_checkpoint
from tests.runtime_support import link_export
from tests.cpp_support import cpp_binary  # noqa: F401 (a fixture)
from tests.tolerances import CROSS_RUNTIME_ATOL, DISTILL_TARGET_ATOL, SAMPLE_ATOL

STUDENT_MESSAGE = "this export holds a 4-step distilled student: use --sampler fast (4 calls)"
TINY_DISTILL = DistillConfig(student_steps=4, teacher_steps=8, steps_per_round=3, batch_size=8, bank_size=10,
                             bank_calls=2, log_every=2, threads=1)
CO = Coefficients.of(ScheduleConfig())


def _build_student(folder: Path) -> None:
    from spritegen.export.exporter import export
    from spritegen.training.distill_run import distill

    (folder / "teacher").mkdir()
    write_tiny_checkpoint(folder / "teacher" / CHECKPOINT_FILE)
    distill(TINY_DISTILL, folder / "student", teacher=str(folder / "teacher"), wandb_mode="disabled")
    export(folder / "student", folder / "export")


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """teacher/ (a tiny random checkpoint), student/ (its 4-step student), export/ (the student's export)."""
    return built_once(tmp_path_factory, "tiny_student", _build_student)


def _batch(rows: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(dpmpp_indices(500, 8))
    k = torch.arange(rows) % 4
    c = torch.nn.functional.one_hot(torch.arange(rows) % 5, 5).float()
    c[0] = 0  # an unconditional row
    return Batch(z=torch.randn((rows, 3, 16, 16), generator=g), i=grid[2 * k], mid=grid[2 * k + 1],
                 end=grid[2 * k + 2], c=c)


@pytest.mark.fast
def test_the_target_lands_where_the_teachers_two_steps_land() -> None:
    """One DDIM step whose x0 is x~ (and eps the one that x0 implies at z_i) reaches the teacher's z_i''
    at every step of the grid, the last (s = 0) included."""
    teacher = make_random_model(seed=3, config=TINY_CONFIG)
    b = _batch()
    with torch.no_grad():
        z_end = ddim_step(teacher, ddim_step(teacher, b.z, b.i, b.mid, b.c, CO), b.mid, b.end, b.c, CO)
    x = pd_target(b.z, z_end, b.i, b.end, CO)
    (a, s), (a2, s2) = CO.at(b.i), CO.at(b.end)
    landed = a2 * x + s2 * (b.z - a * x) / s
    error = (landed - z_end).abs().max().item()
    assert error <= DISTILL_TARGET_ATOL, error
    assert torch.equal(b.end == 0, torch.tensor([False, False, False, True, False, False]))


@pytest.mark.fast
def test_a_round_lowers_the_loss_on_a_fixed_batch() -> None:
    """Adam steps on one batch bring the student's one step closer to the teacher's two (the student
    starts as the teacher, so the loss is the one-step vs two-step gap), and only the student moves."""
    teacher = make_random_model(seed=3, config=TINY_CONFIG)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = RoundTrainer(teacher, CO, DistillConfig(steps_per_round=1000, lrate=1e-3, bf16=False), 8)
    batch = _batch()
    target = trainer.target(batch)
    with torch.no_grad():
        first = float(trainer.loss(batch, target))
    for _ in range(15):
        trainer.step(batch)
    with torch.no_grad():
        last = float(trainer.loss(batch, target))
    assert last < 0.7 * first, (first, last)
    assert all(torch.equal(v, before_teacher[k]) for k, v in teacher.state_dict().items())


@pytest.mark.fast
def test_rounds_halve_the_grid() -> None:
    assert halvings(32, 4) == [(32, 16), (16, 8), (8, 4)]
    assert halvings(8, 4) == [(8, 4)]
    for teacher, student in ((12, 4), (4, 4), (6, 4), (2, 4)):
        with pytest.raises(DistillUsageError, match="power of 2"):
            halvings(teacher, student)
    assert dpmpp_indices(500, 8)[::2] == dpmpp_indices(500, 4)  # the grids nest: the teacher's midpoints


def test_distill_writes_the_student_and_its_section(tiny_student: Path) -> None:
    student, teacher = tiny_student / "student", tiny_student / "teacher"
    config = json.loads((student / "config.json").read_text())
    section = config[DISTILLATION_KEY]
    assert section["indices"] == [500, 375, 250, 125, 0] and section["student_steps"] == 4
    assert section["teacher_sha256"] == sha256_file(teacher / CHECKPOINT_FILE)
    assert section["weights_sha256"] == sha256_file(student / CHECKPOINT_FILE)
    assert [(r["teacher_steps"], r["student_steps"], r["steps"]) for r in section["rounds"]] == [(8, 4, 3)]
    assert config["n_feat"] == TINY_CONFIG.n_feat and config["timesteps"] == 500
    log = [json.loads(line) for line in (student / LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in log if "step" in e] == [2, 3] and log[-1]["round_done"] == 1
    loaded = load_checkpoint(student)
    assert loaded.checkpoint_sha256 == section["weights_sha256"]
    taught = load_checkpoint(teacher).model.state_dict()
    assert any(not torch.equal(v, taught[k]) for k, v in loaded.model.state_dict().items())  # it trained


def test_the_export_runs_the_student_as_eager_ddim(tiny_student: Path, tmp_path: Path) -> None:
    """The manifest's fast section is the student's first-order DDIM on its indices (at the measured
    STUDENT_ETA), and with eta 0 the runtime (fused solver_step.onnx and numpy update) gives the eager
    DDIM-4 of the student's weights."""
    manifest = json.loads((tiny_student / "export" / MANIFEST_FILE).read_text())
    fast = manifest[FAST_KEY]
    assert (fast["solver"], fast["eta"], fast["default_n"], fast["indices"]) == \
        ("ddim", STUDENT_ETA, 4, {"4": [500, 375, 250, 125, 0]})
    assert fast["student"]["teacher_sha256"] == sha256_file(tiny_student / "teacher" / CHECKPOINT_FILE)
    fast["eta"] = 0.0  # the deterministic DDIM the student was distilled for: comparable with the eager DDIM
    sampler = Sampler.load(link_export(tiny_student / "export", tmp_path / "eta0", manifest), provider="cpu")
    context = np.eye(5, dtype=np.float32)[[0, 2, 0]] * np.float32([[1], [1], [0]])  # hero, food, unconditional
    noise = sampler.noise(3, [4, 5, 6])
    want, _ = sample_ddim(load_checkpoint(tiny_student / "student").model, torch.from_numpy(noise),
                          torch.from_numpy(sampler.context(context)), n=4)
    for impl in ("step", "unet"):
        got = sampler.fast(context, noise=noise, impl=impl)
        error = float(np.abs(got - want.numpy()).max())
        assert error <= SAMPLE_ATOL, (impl, error)
    seeded = sampler.fast(context, seed=[4, 5, 6])
    assert np.array_equal(seeded, sampler.fast(context, noise=noise))


def _spritegen(*args: str):
    from spritegen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_line(result, code: int, needle: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and needle in lines[0], (result.exit_code, result.output)


def test_a_students_export_refuses_every_other_sampler(tiny_student: Path, tmp_path: Path) -> None:
    export = tiny_student / "export"
    for args in (("--sampler", "ddim"), ("--sampler", "ddpm"), ("--sampler", "dpmpp"), ("--sampler", "fast", "--n", "6")):
        out = tmp_path / "x.png"
        result = _spritegen("sample", "--export-dir", export, "--out", out, *args)
        # a usage error, as the CLI's others: its usage line and the message in rich's box, exit 2
        assert result.exit_code == 2 and "Usage: " in result.output, result.output
        assert STUDENT_MESSAGE in " ".join(result.output.replace("│", " ").split()), result.output
        assert "Traceback" not in result.output and not out.exists()
    sampler = Sampler.load(export, provider="cpu")
    from spritegen.errors import InputError

    for call in (lambda: sampler.ddim(["hero"]), lambda: sampler.dpmpp(["hero"], n=4), lambda: sampler.fast(["hero"], n=6)):
        with pytest.raises(InputError, match="4-step distilled student"):
            call()


def _export_cli(*args: str):
    from spritegen.export.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_students_config_beside_other_weights_and_fit_are_refused(tiny_student: Path, tmp_path: Path) -> None:
    """A student's config.json with the teacher's weights (its sha256 is not the recorded one), or named
    with --config for them; --fit on a student: exit 2, one line, nothing written."""
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(tiny_student / "teacher" / CHECKPOINT_FILE, mixed)
    shutil.copy(tiny_student / "student" / "config.json", mixed)
    out = tmp_path / "export"
    _one_line(_export_cli(mixed, "--out", out), 2, "is not this checkpoint's config")
    _one_line(_export_cli(mixed / CHECKPOINT_FILE, "--config", mixed / "config.json", "--out", out), 2,
              "is not this checkpoint's config")
    _one_line(_export_cli(tiny_student / "student", "--fit", "--out", out), 2, "4-step distilled student")
    assert not out.exists()


@pytest.mark.parametrize("edit, needle", [
    (lambda section: "a string", "distillation must be an object"),
    (lambda section: {**section, "teacher_sha256": "zz"}, "teacher_sha256 must be a 64-digit hex sha256"),
    (lambda section: {**section, "indices": [500, 0, 3]}, "distillation.indices"),
    (lambda section: {**section, "student_steps": 3}, "student_steps must be the number of steps"),
])
def test_a_malformed_distillation_section_is_one_line(tiny_student: Path, tmp_path: Path, edit, needle: str) -> None:
    """The exporter reads a student's config.json section before trusting it: each malformed field is
    one error line (exit 1, a bad file rather than a bad option), and nothing is written."""
    student = tmp_path / "student"
    shutil.copytree(tiny_student / "student", student)
    config = json.loads((student / "config.json").read_text())
    config[DISTILLATION_KEY] = edit(config[DISTILLATION_KEY])
    (student / "config.json").write_text(json.dumps(config))
    out = tmp_path / "export"
    _one_line(_export_cli(student, "--out", out), 1, needle)
    assert not out.exists()


def test_distill_refuses_bad_options_before_writing(tiny_student: Path, tmp_path: Path) -> None:
    """An unknown --wandb mode, and an --out that already holds a run: exit 2, one line, the run untouched."""
    from spritegen.training.distill_cli import app

    def run(*args: object):
        return CliRunner().invoke(app, [*map(str, args)], catch_exceptions=False)

    out = tmp_path / "run"
    _one_line(run("--out", out, "--wandb", "sometimes"), 2, "--wandb must be one of")
    assert not out.exists()
    before = sha256_file(tiny_student / "student" / CHECKPOINT_FILE)
    _one_line(run("--out", tiny_student / "student", "--wandb", "disabled"), 2, "already holds a distillation run")
    assert sha256_file(tiny_student / "student" / CHECKPOINT_FILE) == before


def test_distill_refuses_a_teacher_that_cannot_teach(tiny_student: Path, tmp_path: Path) -> None:
    """A student teacher on another grid than asked, a student config beside other weights, an odd halving."""
    from spritegen.training.distill_cli import app

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(tiny_student / "teacher" / CHECKPOINT_FILE, mixed)
    shutil.copy(tiny_student / "student" / "config.json", mixed)
    cases = ((("--teacher", tiny_student / "student", "--teacher-steps", "8", "--student-steps", "2"),
              "4-step distilled student"),
             (("--teacher", mixed), "is not this checkpoint's config"),
             (("--teacher", tiny_student / "teacher", "--teacher-steps", "12"), "power of 2"))
    for args, needle in cases:
        out = tmp_path / "run"
        result = CliRunner().invoke(app, ["--out", str(out), "--wandb", "disabled", *map(str, args)],
                                    catch_exceptions=False)
        _one_line(result, 2, needle)
        assert not out.exists()


def test_cpp_runs_the_student_like_python(tiny_student: Path, tmp_path: Path, cpp_binary: Path) -> None:
    """The C++ sampler's fast on the student's export equals the Python runtime's (first order on every
    step), and its other samplers are refused with the runtime's words."""
    from tests.cpp_support import run_cpp, sample_cpp
    from tests.test_cpp_checks import refused

    export = tiny_student / "export"
    got = sample_cpp(cpp_binary, export, tmp_path / "got.npy", "--sampler", "fast", "--class", "hero,spell",
                     "--seed", "4,5")
    want = Sampler.load(export, provider="cpu").fast(["hero", "spell"], seed=[4, 5])
    error = float(np.abs(got - want).max())
    assert error <= CROSS_RUNTIME_ATOL, error
    for args in (("--sampler", "ddim"), ("--sampler", "dpmpp"), ("--sampler", "fast", "--n", "6")):
        refused(run_cpp(cpp_binary, export, *args, "--out-npy", str(tmp_path / "x.npy")), STUDENT_MESSAGE, code=2)
    assert not (tmp_path / "x.npy").exists()



@pytest.mark.fast
def test_the_service_publishes_the_student_marker() -> None:
    """serving.schema.fast_section carries "student", and a client's reading of it (as spritegen.remote
    reads the published section) refuses every other call count with the runtime's words."""
    from spritegen.errors import InputError
    from spritegen.runtime.manifest_fields import fast_sampler
    from spritegen.serving.schema import fast_section

    section = {"solver": "ddim", "eta": 1.0, "default_n": 4, "indices": {"4": [500, 375, 250, 125, 0]},
               "student": {"teacher_sha256": "0" * 64}}
    published = fast_section(fast_sampler({FAST_KEY: section}, 500))
    assert published["student"] == {"steps": 4} and published["solver"] == "ddim"
    read = fast_sampler({FAST_KEY: published}, 500)
    assert read.student and read.first_order and read.table(None) == (500, 375, 250, 125, 0)
    with pytest.raises(InputError, match="4-step distilled student"):
        read.table(6)
