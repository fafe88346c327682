"""Two changes to what PyTriton 0.7.0 hands Triton, applied when the server starts.

1. Per-request refusals. PyTriton's Python-backend stub (its proxy `model.py`, copied
   into Triton's model directory) answers a batch with one status: raise and every
   request merged into it fails, return and every one succeeds. Triton itself lets each
   response carry its own error, so the stub's `_wrap_response` is given one rule: a
   response whose `error` output is non-empty becomes an error response (INVALID_ARG:
   HTTP 400, gRPC INVALID_ARGUMENT) with that line and no outputs. A refused request
   therefore never gets a picture, whatever it was batched with (docs/serving.md).
   The stub's own catch-all sent `traceback.format_exc()` to the client (stack frames and
   the temporary model path); it now sends the exception's last line.
2. Published parameters. `parameters` of each model's config carry what a client needs
   (spritegen.serving.published), read back by spritegen.client.

Both are text edits of PyTriton's files checked at start: if an anchor is missing (another
PyTriton version), the server refuses to start with one line instead of serving a batch
status per batch again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from spritegen.errors import SpriteGenError

SUPPORTED = "0.7.0"

_WRAP_ANCHOR = "def _wrap_response(response: Response, requested_outputs_names, model_outputs_dict):\n"
_WRAP_REFUSAL = _WRAP_ANCHOR + '''    refusal = (response.data or {}).get("error")
    if refusal is not None and refusal.size and refusal.flat[0]:
        reason = refusal.flat[0]
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return pb_utils.InferenceResponse(  # spritegen: one refused request, its own status
            output_tensors=[], error=pb_utils.TritonError(reason, pb_utils.TritonError.INVALID_ARG))
'''
_EXECUTE_TAIL = '            raise pb_utils.TritonModelException(f"Model execute error: {msg}")'
_EXECUTE_ANCHOR = "            msg = traceback.format_exc()\n" + _EXECUTE_TAIL
_EXECUTE_LAST_LINE = ("            msg = ([line for line in traceback.format_exc().splitlines() if line.strip()]"
                      " or ['error'])[-1][-1000:]  # spritegen: no frames, no paths\n" + _EXECUTE_TAIL)

_parameters: dict[str, dict[str, str]] = {}  # Triton model name -> its published parameters
_applied = False


def patched_model_file(source: bytes) -> bytes:
    """PyTriton's proxy model.py with the two stub edits (module doc), or SpriteGenError."""
    text = source.decode("utf-8")
    if text.count(_WRAP_ANCHOR) != 1 or text.count(_EXECUTE_ANCHOR) != 1:
        raise SpriteGenError(f"spritegen serve needs nvidia-pytriton {SUPPORTED} (its stub changed): "
                             f"pip install 'nvidia-pytriton=={SUPPORTED}'")
    return text.replace(_WRAP_ANCHOR, _WRAP_REFUSAL).replace(_EXECUTE_ANCHOR, _EXECUTE_LAST_LINE).encode("utf-8")


def publish(model_name: str, parameters: Mapping[str, str]) -> None:
    """Put `parameters` into `model_name`'s Triton config (applied by `apply`)."""
    _parameters[model_name] = dict(parameters)


def apply() -> None:
    """Install both edits into PyTriton's Model (idempotent; call before Triton.run)."""
    global _applied
    if _applied:
        return
    import pytriton
    from pytriton.models.model import Model

    files, generate, config = Model.get_proxy_model_files, Model.generate_model, Model._get_triton_model_config
    patched_model_file((Path(pytriton.__file__).parent / "proxy" / "model.py").read_bytes())  # an unknown
    # PyTriton is refused here, before anything starts

    def get_proxy_model_files(self: Model) -> dict[str, bytes]:  # models loaded through Triton's API
        found = files(self)
        key = f"file:{self.model_version}/model.py"
        return {**found, key: patched_model_file(found[key])}

    def generate_model(self: Model, model_repository: Path) -> None:  # models written to a local store
        generate(self, model_repository)
        stub = Path(model_repository) / self.model_name / str(self.model_version) / "model.py"
        stub.write_bytes(patched_model_file(stub.read_bytes()))

    def get_triton_model_config(self: Model):
        model_config = config(self)
        model_config.backend_parameters.update(_parameters.get(self.model_name, {}))
        return model_config

    Model.get_proxy_model_files = get_proxy_model_files  # type: ignore[method-assign]
    Model.generate_model = generate_model  # type: ignore[method-assign]
    Model._get_triton_model_config = get_triton_model_config  # type: ignore[method-assign]
    _applied = True
