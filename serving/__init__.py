"""spritegen.serving: the runtime's `Sampler` as a Triton Inference Server service.

Two routes (docs/serving.md): `spritegen serve` runs Triton with the Sampler inside
through PyTriton (dynamic batching, per-row seeds, one-line request errors), and
`spritegen triton-repo` writes a model repository for Triton's ONNX Runtime backend.
Importing this package imports neither pytriton nor onnxruntime: `schema` is numpy only,
so `spritegen.client` can use it; the server modules import pytriton when they start.
"""
