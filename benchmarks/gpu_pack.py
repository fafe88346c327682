"""Carry onnxruntime-gpu to a lent GPU machine in parts, and install it there.

The lent machine reaches no network, and one call to it carries at most 64 MiB (the
working tree included), while the onnxruntime-gpu wheel is ~256 MB. So, here (PyPI):

    python benchmarks/gpu_pack.py fetch    # the wheel for the machine's Python into .gpu-pack/wheels
    python benchmarks/gpu_pack.py split    # parts + .gpu-pack/pack.json (hashes, Requires-Dist, the calls)
    python benchmarks/gpu_pack.py plan     # each call's carry list and command

and there, in every call, `bash benchmarks/gpu.sh`, which runs `stash` (verify the parts
this call carried, keep them outside the repository) and, once every part is there,
`install` (reassemble, verify the wheel's sha256, pip-install it into a target folder)
and `libpath` (the nvidia-* wheels' library folders for LD_LIBRARY_PATH). `check-libs`
compares the wheel's CUDA/cuDNN requirements with what the machine has installed.
docs/benchmarks.md ("GPU") gives the whole sequence. Standard library only: it runs
before anything is installed there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK = Path(".gpu-pack")  # ignored by git; relative to the repository root
MANIFEST = PACK / "pack.json"
WHEEL = "onnxruntime-gpu==1.31.1"  # CUDA 13 + cuDNN 9 build (its [cuda,cudnn] extras name cu13 wheels)
MACHINE_PYTHON = "3.12"  # the lent machine's python3 (its torch venv)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CALL_LIMIT = 64 * 2**20  # what one call carries, the working tree included
MARGIN = 2 * 2**20  # room for files the tree gains between split and the calls
STASH = Path(os.environ.get("SPRITEGEN_GPU_STASH", "/var/tmp/spritegen-gpu-pack"))
CUDA_EXTRAS = ("cuda", "cudnn")


class PackError(Exception):
    """A step that cannot go on; main() prints it as one line and exits 1."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def requirements(wheel: Path, extras: tuple[str, ...] = CUDA_EXTRAS) -> list[str]:
    """The wheel's Requires-Dist lines for `extras` (the CUDA/cuDNN wheels it needs), marker dropped."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    found = []
    for line in lines:
        match = re.match(r"Requires-Dist:\s*([^;]+);\s*extra\s*==\s*['\"](\w+)['\"]", line)
        if match and match.group(2) in extras:
            found.append(match.group(1).strip())
    return found


def tree_bytes(repo: Path = REPO) -> int:
    """What a call carries besides the parts: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())


def split(wheels: list[Path], out: Path, part_bytes: int, budget: int) -> dict:
    """Cut each wheel into parts of at most part_bytes under out/parts; group the parts into
    calls that each carry at most `budget` bytes; return the pack manifest (also written)."""
    if part_bytes > budget:
        raise PackError(f"parts of {part_bytes} bytes cannot fit a call's {budget} bytes; use a smaller --part-mib")
    parts_dir = out / "parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    record: dict = {"format": "spritegen-gpu-pack/1", "wheels": [], "calls": []}
    for wheel in wheels:
        entry = {"file": wheel.name, "size": wheel.stat().st_size, "sha256": sha256(wheel),
                 "requires": requirements(wheel), "parts": []}
        with open(wheel, "rb") as f:
            for k, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
                part = parts_dir / f"{wheel.name}.part{k:02d}"
                part.write_bytes(block)
                entry["parts"].append({"file": part.name, "size": len(block),
                                       "sha256": hashlib.sha256(block).hexdigest()})
        record["wheels"].append(entry)
    call: list[str] = []
    used = 0
    for part in (p for w in record["wheels"] for p in w["parts"]):
        if call and used + part["size"] > budget:
            record["calls"].append(call)
            call, used = [], 0
        call.append(part["file"])
        used += part["size"]
    record["calls"].append(call)
    _write_json(out / "pack.json", record)
    return record


def stash(repo_pack: Path, store: Path) -> tuple[list[str], list[str]]:
    """Verify and keep the parts this call carried; (parts now kept, parts still missing)."""
    record = json.loads((repo_pack / "pack.json").read_text())
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo_pack / "pack.json", store / "pack.json")
    kept, missing = [], []
    for part in (p for w in record["wheels"] for p in w["parts"]):
        carried, target = repo_pack / "parts" / part["file"], store / part["file"]
        if carried.is_file() and not target.is_file():
            if sha256(carried) != part["sha256"]:
                raise PackError(f"{carried} does not match its sha256 in pack.json: carry it again")
            shutil.copy(carried, target.with_suffix(".tmp"))
            os.replace(target.with_suffix(".tmp"), target)
        (kept if target.is_file() else missing).append(part["file"])
    return kept, missing


def assemble(store: Path, wheel: dict, into: Path) -> Path:
    """The wheel rebuilt from its stashed parts in `into`, its sha256 verified."""
    path = into / wheel["file"]
    with open(path.with_suffix(".tmp"), "wb") as out:
        for part in wheel["parts"]:
            with open(store / part["file"], "rb") as f:
                shutil.copyfileobj(f, out)
    if sha256(path.with_suffix(".tmp")) != wheel["sha256"]:
        os.unlink(path.with_suffix(".tmp"))
        raise PackError(f"{wheel['file']} reassembled from its parts does not match its sha256: split it again")
    os.replace(path.with_suffix(".tmp"), path)
    return path


def install(store: Path, target: Path, python: str = sys.executable) -> list[str]:
    """Reassemble every wheel of the stashed pack and pip-install it into `target` (no index,
    no dependencies); returns the wheel files installed. Idempotent: a wheel whose sha256
    marker is in `target` is not installed again."""
    record = json.loads((store / "pack.json").read_text())
    missing = [p["file"] for w in record["wheels"] for p in w["parts"] if not (store / p["file"]).is_file()]
    if missing:
        raise PackError(f"{len(missing)} part(s) not carried yet: {', '.join(missing)}")
    target.mkdir(parents=True, exist_ok=True)
    done = []
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in record["wheels"]:
            marker = target / f".installed-{wheel['sha256']}"
            if marker.is_file():
                continue
            path = assemble(store, wheel, Path(tmp))
            proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                   "--no-cache-dir", "--upgrade", "--target", str(target), str(path)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
                raise PackError(f"pip could not install {wheel['file']}: {tail}")
            marker.write_text(wheel["file"])
            done.append(wheel["file"])
    return done


def library_dirs(roots: list[Path]) -> list[str]:
    """Folders named lib under each root's nvidia/ that hold shared libraries (the CUDA,
    cuBLAS and cuDNN wheels' layout), for LD_LIBRARY_PATH."""
    found = []
    for root in roots:
        for lib in sorted((root / "nvidia").glob("**/lib")) if (root / "nvidia").is_dir() else []:
            if any(".so" in p.name for p in lib.iterdir()) and str(lib) not in found:
                found.append(str(lib))
    return found


def check_libs(store: Path) -> dict:
    """Each CUDA/cuDNN requirement of the packed wheels against the installed distributions."""
    from importlib import metadata

    record = json.loads((store / "pack.json").read_text())
    report = {}
    for requirement in (r for w in record["wheels"] for r in w["requires"]):
        name = re.split(r"[<>=~! \[]", requirement, maxsplit=1)[0]
        try:
            report[requirement] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[requirement] = None
    return {"requirements": report, "missing": [r for r, v in report.items() if v is None]}


def junit_summary(xml_path: Path, returncode: int) -> dict:
    """pytest's JUnit XML as a small JSON record: counts, and every case not passed with its reason."""
    import xml.etree.ElementTree as ElementTree

    record: dict = {"returncode": returncode, "passed": 0, "failed": 0, "skipped": 0, "not_passed": []}
    if not xml_path.is_file():
        return {**record, "error": f"{xml_path} missing: pytest did not finish"}
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        kind = "passed" if outcome is None else "skipped" if outcome.tag == "skipped" else "failed"
        record[kind] += 1
        if outcome is not None:
            record["not_passed"].append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": kind,
                                         "message": (outcome.get("message") or "")[:300]})
    return record


def _write_json(path: Path, data: dict) -> None:
    path.with_suffix(".tmp").write_text(json.dumps(data, indent=1))
    os.replace(path.with_suffix(".tmp"), path)


def _site_roots() -> list[Path]:
    import site

    roots = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return roots + [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]


# --------------------------------------------------------------------------- commands
def cmd_fetch(args: argparse.Namespace) -> None:
    """Download the wheel (no dependencies) for the machine's Python and platform."""
    wheels = PACK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               args.python, "--implementation", "cp", *platforms, "-d", str(wheels), args.wheel]
    if subprocess.run(command).returncode != 0:
        raise PackError(f"pip could not download {args.wheel} for Python {args.python}")
    print("\n".join(str(p) for p in sorted(wheels.glob("*.whl"))))


def cmd_split(args: argparse.Namespace) -> None:
    wheels = [Path(w) for w in args.wheels] or sorted((PACK / "wheels").glob("*.whl"))
    if not wheels:
        raise PackError(f"no wheel to split: run `python {Path(__file__).name} fetch` first")
    budget = CALL_LIMIT - tree_bytes() - MARGIN if args.budget_mib is None else int(args.budget_mib * 2**20)
    part = budget if args.part_mib is None else int(args.part_mib * 2**20)
    record = split(wheels, PACK, part, budget)
    print(f"{sum(len(w['parts']) for w in record['wheels'])} parts in {len(record['calls'])} call(s), "
          f"at most {budget / 2**20:.1f} MiB of parts per call; {MANIFEST} written")


def cmd_plan(args: argparse.Namespace) -> None:
    """One line per device call: the carry list (JSON) and the command."""
    record = json.loads(MANIFEST.read_text())
    for k, call in enumerate(record["calls"], start=1):
        carry = [str(MANIFEST)] + [str(PACK / "parts" / name) for name in call]
        last = k == len(record["calls"])
        print(json.dumps({"call": k, "carry": carry, "command": "bash benchmarks/gpu.sh",
                          "timeout_s": 570 if last else 120}))


def cmd_stash(args: argparse.Namespace) -> None:
    kept, missing = stash(Path(args.pack), Path(args.store))
    print(f"stashed {len(kept)}/{len(kept) + len(missing)} parts in {args.store}"
          + (f"; still to carry: {' '.join(missing)}" if missing else "; complete"))
    sys.exit(0 if not missing else 3)  # 3: incomplete, the caller stops this call here


def cmd_install(args: argparse.Namespace) -> None:
    done = install(Path(args.store), Path(args.target))
    print(f"installed into {args.target}: {' '.join(done) or 'already there'}")


def cmd_libpath(args: argparse.Namespace) -> None:
    print(os.pathsep.join(library_dirs([Path(p) for p in args.roots] or _site_roots())))


def cmd_check_libs(args: argparse.Namespace) -> None:
    print(json.dumps(check_libs(Path(args.store))))


def cmd_junit_json(args: argparse.Namespace) -> None:
    record = junit_summary(Path(args.xml), args.returncode)
    _write_json(Path(args.out), record)
    print(f"tests: {record['passed']} passed, {record['failed']} failed, {record['skipped']} skipped -> {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download the wheel (here, with PyPI)")
    p.add_argument("--wheel", default=WHEEL)
    p.add_argument("--python", default=MACHINE_PYTHON)
    p.set_defaults(run=cmd_fetch)
    p = sub.add_parser("split", help="cut the wheels into parts and plan the calls")
    p.add_argument("wheels", nargs="*", help="default: every wheel in .gpu-pack/wheels")
    p.add_argument("--part-mib", type=float, help="part size, MiB (default: one part fills a call)")
    p.add_argument("--budget-mib", type=float, help="parts per call, MiB (default: 64 MiB less the tree)")
    p.set_defaults(run=cmd_split)
    sub.add_parser("plan", help="print each call's carry list and command").set_defaults(run=cmd_plan)
    for name, run in (("stash", cmd_stash), ("install", cmd_install), ("check-libs", cmd_check_libs)):
        p = sub.add_parser(name)
        p.add_argument("--store", default=str(STASH), help="where parts are kept between calls")
        p.add_argument("--pack", default=str(PACK), help="the carried .gpu-pack folder")
        p.add_argument("--target", default="/tmp/site", help="install: pip --target folder")
        p.set_defaults(run=run)
    p = sub.add_parser("libpath", help="LD_LIBRARY_PATH entries of the nvidia-* wheels")
    p.add_argument("roots", nargs="*", help="site folders to search (default: PYTHONPATH and site-packages)")
    p.set_defaults(run=cmd_libpath)
    p = sub.add_parser("junit-json", help="pytest's JUnit XML as a JSON summary")
    p.add_argument("xml")
    p.add_argument("out")
    p.add_argument("returncode", type=int)
    p.set_defaults(run=cmd_junit_json)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (PackError, OSError, ValueError, KeyError) as exc:
        print(f"gpu_pack {args.command}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
