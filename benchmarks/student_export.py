"""The bundled 4-step student's exports for benchmarks.sampler_quality's student rows.

"student": `spritegen-export export/demo/student` as it ships (the manifest's fast section: first-order
DDIM on the student's indices, eta export/student.STUDENT_ETA = 1, first-order SDE-DPM-Solver++),
exported once into the spritegen cache. "student-eta0": the same graphs with the fast section's eta
set to 0 (the deterministic DDIM it was distilled for), to measure which eta the exporter should write.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from spritegen.contract import FAST_KEY, MANIFEST_FILE
from spritegen.files import sha256_file, write_text_atomic

STUDENT_DIR = Path(__file__).resolve().parent.parent / "export" / "demo" / "student"


def student_exports(say=print) -> dict[str, Path]:
    """{"student": the shipped export, "student-eta0": its eta 0 variant}, built when missing (keyed by the weights' sha256)."""
    from spritegen.cache import cache_dir
    from spritegen.export.exporter import export

    root = cache_dir() / "exports" / f"demo-student-{sha256_file(STUDENT_DIR / 'context_model.pth')[:16]}"
    shipped, plain = root / "shipped", root / "eta0"
    if not (shipped / MANIFEST_FILE).is_file():
        say(f"exporting the bundled student to {shipped}")
        export(STUDENT_DIR, shipped)
    if not (plain / MANIFEST_FILE).is_file():
        shutil.rmtree(plain, ignore_errors=True)
        shutil.copytree(shipped, plain)
        manifest = json.loads((plain / MANIFEST_FILE).read_text())
        manifest[FAST_KEY]["eta"] = 0.0
        write_text_atomic(plain / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return {"student": shipped, "student-eta0": plain}
