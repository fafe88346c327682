"""How much one runtime call may ask for: the bounds checked before anything is allocated.

Why bounds at all: a sampler's memory grows with the batch (buffers, the network's
activations, intermediates) and an export's files and manifest come from elsewhere, so
an unchecked `ddim(["hero"] * 10**6)`, `threads=100000` or a manifest claiming
timesteps = 10**7 would allocate tens of GB, or spin up a thread per request, before
failing. Every bound below is checked first and refused with one line that names it.

Each is a documented default, not a law: `Sampler.load(max_batch=...)` (CLI:
`--max-batch`) raises the batch bound for one sampler, and the rest are module
constants a host can read (docs/runtime.md, "Limits").
"""

from __future__ import annotations

import os

from spritegen.contract import TIMESTEPS_LIMITS

# Sprites per call. Measured on the demo export: one guided DDIM call at batch 1024 raised the
# process's peak RSS from 86 MiB to 1.2 GB (impl="step"; each other implementation's session
# keeps its own arena, +0.8 GB for "unet"). A service wanting more calls more often, or passes
# max_batch.
MAX_BATCH = 1024
# Intermediate states one call may keep (save_rate), in bytes: DDPM-500 with save_rate=1 keeps
# 501 states per sprite (1.5 MB each at 16x16 RGB); 1 GiB is ~680 such sprites.
MAX_KEPT_BYTES = 1 << 30
# ORT intra-op threads per session: more threads than cores only adds contention (measured:
# threads=1000 made one DDIM-5 sprite take 56 s), so the bound is a multiple of the cores.
THREADS_PER_CORE = 4
# Idle workspaces a Sampler keeps for reuse (runtime.pool): per batch shape (enough for that many
# concurrent calls of one shape to reuse theirs) and overall (a service seeing many shapes).
MAX_IDLE_RUNNERS_PER_SHAPE = 8
MAX_IDLE_RUNNERS = 32
# Export facts read from a manifest (the course: T=500, 16x16 RGB, 5 classes, 64 features): the
# model's hyperparameters are held to spritegen.contract.MODEL_LIMITS, the exporter's own table,
# so whatever exports loads; T to the exporter's TIMESTEPS_LIMITS (DDPM literature uses
# 1000-4000; each step is one network call).
MAX_TIMESTEPS = TIMESTEPS_LIMITS[1]
MAX_CLASS_NAME = 64  # characters
MAX_FAST_TABLES = 64  # fitted step tables in a manifest's "fast" section (the demo ships 5)
# Files: protobuf cannot serialise a model of 2 GiB or more, so a bigger graph file is not one.
MAX_GRAPH_BYTES = (1 << 31) - 1
MAX_MANIFEST_BYTES = 4 << 20  # the demo's is ~0.1 MB; T = MAX_TIMESTEPS makes ~1 MB
# Weights: guidance and blend weights beyond these only overflow float32 (NaN sprites).
MAX_GUIDANCE = 100.0  # the course samples with w up to ~5
MAX_CONTEXT_WEIGHT = 100.0  # the network was trained on one-hot rows (weights 0 and 1)
# Pictures (runtime.images): pixels of one image, and of all frames of one animation.
MAX_PICTURE_PIXELS = 1 << 26  # 67 Mpx: ~200 MB as RGB
MAX_ANIMATION_PIXELS = 1 << 28  # ~800 MB as RGB frames in memory
MAX_SCALE = 64  # pixels per sprite pixel
MAX_FRAME_MS = 655_350  # GIF frame delays are 16-bit hundredths of a second


def max_threads() -> int:
    """The most ORT intra-op threads a session may use: THREADS_PER_CORE x the machine's cores."""
    return THREADS_PER_CORE * max(1, os.cpu_count() or 1)
