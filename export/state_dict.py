"""A checkpoint file's bytes -> a ContextUnet, treating every byte as untrusted.

Reading: `torch.load(weights_only=True)` on bytes already read (so the sha256 recorded for
the export is the hash of exactly what was loaded), which unpickles tensors and plain
containers only; a refused pickle is reported by what it tried to call (pickle_scan), never
with torch's advice to load it unsafely.

Building, strictly: the course's key names and shapes (only the pinned shortcut may be
absent), and each tensor as the model keeps it: dense, on the CPU, floating point where the
model's parameter is floating point (int, bool and complex weights are refused, not cast),
an integer count for BatchNorm's num_batches_tracked, and finite. A NaN or inf weight is
refused here, with its key, rather than surfacing as an "inf" error in validation.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile

import torch

from spritegen.contract import ModelConfig
from spritegen.errors import CheckpointError, first_line
from spritegen.export.model import SHORTCUT_KEYS, ContextUnet, pinned_shortcut_
from spritegen.export.pickle_scan import refused_call

_REFUSAL_REASON = ("spritegen loads checkpoints with torch's weights-only unpickler, because a pickle that "
                   "calls functions can run any program on this machine; a state_dict needs none: save it with "
                   "torch.save(model.state_dict(), path)")


def check_archive(data: bytes, name: str, max_bytes: int) -> None:
    """Refuse a zip checkpoint whose records would expand beyond `max_bytes`: torch.save stores
    every record uncompressed, so a compressed record can only be a decompression bomb."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return  # torch's legacy format: storages are read from the file itself, bounded by its size
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint (damaged archive: "
                              f"{first_line(exc)})") from None
    compressed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise CheckpointError(f"{name} holds compressed records ({compressed[0]!r}); torch.save never "
                              "compresses, so this is not a checkpoint it wrote: refused")
    total = sum(r.file_size for r in records)
    if total > max_bytes:
        raise CheckpointError(f"{name} declares {total} bytes of records, more than the {max_bytes} allowed")


def read_state_dict(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """The state_dict pickled in `data` (the file `name`), tensors and plain containers only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's TypedStorage deprecation notes are not the user's concern
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        call = refused_call(data, str(exc))
        if call is not None:
            raise CheckpointError(f"{name} is not a plain state_dict: unpickling it would call {call}; refused: "
                                  f"{_REFUSAL_REASON}") from None
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint ({_unpickler_detail(exc)})") from None
    except Exception as exc:  # zip, storage and EOF errors of a damaged or foreign file
        raise CheckpointError(f"{name} is not a readable PyTorch checkpoint ({first_line(exc)})") from None
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{name} does not hold a state_dict (a dict of parameter name -> tensor); "
                              "save it with torch.save(model.state_dict(), path)")
    return state


def _unpickler_detail(exc: BaseException) -> str:
    """torch's one informative line, without its advice to load the file unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and "Weights only load failed" not in line
              and "trust" not in line.lower()]
    return (useful[0] if useful else type(exc).__name__).split(". ")[0]


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Hyperparameters from the state_dict's shapes (a run config can only confirm them)."""
    shapes = {}
    for key, rank in (("init_conv.conv1.0.weight", 4), ("contextembed1.model.0.weight", 2), ("up0.0.weight", 4)):
        if key not in state:
            raise CheckpointError(f"state_dict lacks {key!r}: not a ContextUnet checkpoint")
        if state[key].dim() != rank:
            raise CheckpointError(f"checkpoint key {key!r} has shape {tuple(state[key].shape)}, not a "
                                  f"{rank}-d ContextUnet weight")
        shapes[key] = state[key].shape
    conv = shapes["init_conv.conv1.0.weight"]  # (n_feat, in_channels, 3, 3)
    context = shapes["contextembed1.model.0.weight"]  # (2 n_feat, n_cfeat)
    up0 = shapes["up0.0.weight"]  # (2 n_feat, 2 n_feat, height/4, height/4)
    return ModelConfig(in_channels=int(conv[1]), n_feat=int(conv[0]), n_cfeat=int(context[1]),
                       height=int(up0[2]) * 4)


def check_tensor(key: str, tensor: torch.Tensor, expected: torch.Tensor) -> None:
    """CheckpointError unless `tensor` can stand for the model's `expected` without a cast (module doc)."""
    if tensor.layout != torch.strided:
        raise CheckpointError(f"checkpoint key {key!r} is a {tensor.layout} tensor; spritegen loads dense "
                              "weights only (save tensor.to_dense())")
    if tensor.is_meta or tensor.device.type != "cpu":
        raise CheckpointError(f"checkpoint key {key!r} is a {tensor.device.type} tensor without data; "
                              "save the real weights")
    if expected.is_floating_point():
        if not tensor.is_floating_point():
            raise CheckpointError(f"checkpoint key {key!r} is {tensor.dtype}, but the model's weight is "
                                  f"{expected.dtype}: spritegen loads floating-point weights only (no silent cast)")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint key {key!r} holds NaN or infinite values; the weights are "
                                  "broken (a diverged training run?): export a healthy checkpoint")
    elif tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise CheckpointError(f"checkpoint key {key!r} is {tensor.dtype}, but the model keeps an integer "
                              f"count there ({expected.dtype})")


def build_model(state: dict[str, torch.Tensor], config: ModelConfig, shortcut_seed: int) -> tuple[ContextUnet, bool]:
    """ContextUnet with `state` loaded strictly; the shortcut is pinned when absent."""
    model = ContextUnet.from_config(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in SHORTCUT_KEYS]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise CheckpointError(f"checkpoint does not match ContextUnet{config.to_dict()}: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"checkpoint key {key!r} has shape {tuple(tensor.shape)} but ContextUnet"
                                  f"{config.to_dict()} expects {tuple(expected[key].shape)}")
        check_tensor(key, tensor, expected[key])
    has_shortcut = all(k in state for k in SHORTCUT_KEYS)
    if not has_shortcut:
        pinned_shortcut_(model.init_conv.shortcut, shortcut_seed)
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in SHORTCUT_KEYS}}
    model.load_state_dict(state, strict=True)
    return model.eval(), has_shortcut


def _few(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
