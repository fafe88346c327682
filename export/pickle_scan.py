"""What a refused checkpoint pickle tried to call, found without running it.

torch.load(weights_only=True) refuses a pickle that imports anything beyond tensors and
plain containers, and its message then advises loading the file with weights_only=False,
which would run whatever the file names. We never relay that advice: instead we name the
callable the file asked for (the GLOBAL / STACK_GLOBAL a REDUCE would call), found by
walking the pickle's opcodes with `pickletools.genops`, which decodes but never executes.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile

# Globals a plain state_dict pickle imports (torch's tensor rebuilders, storages, dtypes and
# OrderedDict); anything else is what weights_only refused.
_SAFE_MODULES = ("torch", "collections")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_TORCH_NAMED = re.compile(r"GLOBAL ([\w.]+)")  # "...unsupported GLOBAL posix.system whose..."
MAX_OPCODES = 1_000_000  # a state_dict pickle has a few thousand; stop scanning a hostile one early


def _pickle_bytes(data: bytes) -> bytes:
    """The object pickle of a torch checkpoint: archive/data.pkl of the zip format, else the file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            return archive.read(names[0]) if names else b""
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, RuntimeError, NotImplementedError):
        return data  # torch's legacy format: pickles one after another


def imported_globals(data: bytes) -> list[str]:
    """"module.name" of every global the pickle imports, in order (a malformed tail is ignored)."""
    found: list[str] = []
    strings: list[str] = []
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(_pickle_bytes(data))):
            if count >= MAX_OPCODES:
                break
            if opcode.name in _STRING_OPS:
                strings.append(arg if isinstance(arg, str) else str(arg))
            elif opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # genops raises ValueError and friends on garbage; what was read still counts
        pass
    return found


def refused_call(data: bytes, torch_message: str) -> str | None:
    """The callable the checkpoint asked for that a weights-only load refuses, or None if unknown."""
    named = _TORCH_NAMED.search(torch_message)
    if named:
        return named.group(1)
    unsafe = [g for g in imported_globals(data) if g.split(".", 1)[0] not in _SAFE_MODULES]
    return unsafe[0] if unsafe else None
