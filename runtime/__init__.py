"""spritegen.runtime: DDPM and DDIM sampling around ONNX Runtime sessions.

Imports numpy and onnxruntime only, never torch; everything it needs to sample
(schedule, class names, IO contract) comes from the export directory's manifest.
"""
