"""spritegen's benchmark harness: eager PyTorch vs TorchScript vs ONNX Runtime (and C++, and CUDA).

`python -m benchmarks.run [--quick] [--out benchmarks/results]` measures every backend of
`benchmarks.backends.BACKENDS` in its own worker process (so one backend's threads and
memory never disturb another's), against the fp32 matrix-multiply peak measured in the
same run, and writes JSON, Markdown and a PNG plot. See docs/benchmarks.md.
"""
