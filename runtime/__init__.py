"""spritegen.runtime: DDPM and DDIM sampling around ONNX Runtime sessions.

Imports numpy and onnxruntime only, never torch; everything it needs to sample
(schedule, class names, IO contract) comes from the export directory's manifest.
"""

from spritegen.runtime.context import make_context, parse_blend
from spritegen.runtime.manifest import Manifest, load_manifest
from spritegen.runtime.sampler import IMPLS, Sampler

__all__ = ["IMPLS", "Manifest", "Sampler", "load_manifest", "make_context", "parse_blend"]
