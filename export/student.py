"""A distilled student checkpoint: read and check its config's "distillation" section.

`python -m spritegen.training distill` writes a student as an ordinary checkpoint directory
(context_model.pth + config.json) whose config carries a DISTILLATION_KEY section: the step
indices it must be sampled on (DDIM, eta 0: one network call per step), the teacher's sha256,
and the sha256 of the student's own weights. The weights are only meaningful on those indices,
so the section is checked before anything uses it: a student's config.json beside other
weights (a teacher's, or a retrained student's) is refused, as is a section whose indices do
not fall from T to 0 in `student_steps` steps. `fast_section` turns it into the manifest's
"fast" section, which every runtime runs with the fused solver_step graph at first order.
"""

from __future__ import annotations

from typing import Any

from spritegen.contract import ScheduleConfig, check_solver_indices
from spritegen.errors import CheckpointError, UsageError
from spritegen.files import is_sha256

DISTILLATION_KEY = "distillation"  # the section's key in a student's config.json
STUDENT_SOLVER = "ddim"  # the student's sampler: DDIM (first-order DPM-Solver++)
# eta of a student's fast section: 1 (first-order SDE-DPM-Solver++, noise on each of its steps) measured
# better than the deterministic 0 it was distilled for, on the bundled student (docs/samplers.md:
# sprite-FID 59.9 vs 76.1, class accuracy 0.958 vs 0.920, 500 sprites)
STUDENT_ETA = 1.0


def _sha(section: dict[str, Any], key: str, origin: str) -> str:
    value = section.get(key)
    if not is_sha256(value):
        raise CheckpointError(f"{origin}: {DISTILLATION_KEY}.{key} must be a 64-digit hex sha256, got "
                              f"{str(value)[:80]!r}; it is not a student's config written by distill")
    return value


def read_student(run_config: dict[str, Any] | None, checkpoint_sha256: str, schedule: ScheduleConfig,
                 origin: str) -> dict[str, Any] | None:
    """The checked distillation section of `run_config`, or None when the checkpoint is no student.

    CheckpointError (one line) when the section is malformed; UsageError (the CLIs exit 2) when the
    weights loaded (`checkpoint_sha256`) are not the ones the distillation wrote (`weights_sha256`).
    """
    if not run_config or DISTILLATION_KEY not in run_config:
        return None
    section = run_config[DISTILLATION_KEY]
    if not isinstance(section, dict):
        raise CheckpointError(f"{origin}: {DISTILLATION_KEY} must be an object, got {type(section).__name__}")
    weights = _sha(section, "weights_sha256", origin)
    _sha(section, "teacher_sha256", origin)
    if weights != checkpoint_sha256:
        raise UsageError(f"{origin} describes a distilled student whose weights have sha256 {weights[:12]}..., "
                              f"but the checkpoint beside it is {checkpoint_sha256[:12]}...: it is not this "
                              "checkpoint's config; pass the student's own directory, or the teacher without it")
    steps = section.get("student_steps")
    try:
        indices = check_solver_indices(section.get("indices"), schedule.timesteps)
    except ValueError as exc:
        raise CheckpointError(f"{origin}: {DISTILLATION_KEY}.indices: {exc}") from None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps != len(indices) - 1:
        raise CheckpointError(f"{origin}: {DISTILLATION_KEY}.student_steps must be the number of steps of its "
                              f"indices ({len(indices) - 1}), got {steps!r}")
    return {**section, "indices": list(indices)}


def fast_section(student: dict[str, Any]) -> dict[str, Any]:
    """The manifest's "fast" section of a student: first-order DDIM on its indices (eta STUDENT_ETA), its call
    count only."""
    steps = student["student_steps"]
    kept = ("teacher_sha256", "weights_sha256", "teacher_steps", "rounds", "steps_per_round", "method")
    return {"solver": STUDENT_SOLVER, "eta": STUDENT_ETA, "default_n": steps, "indices": {str(steps): student["indices"]},
            "student": {k: student[k] for k in kept if k in student}}
