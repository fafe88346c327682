"""Every tolerance the tests hold results to, once, each with the reason for its size.

Sprites and states live in [-1, 1] (unclipped states a little beyond). A tolerance here
is what float32 arithmetic in a different order can explain, and well below what a real
defect moves (a wrong coefficient, index or context moves samples by >= 1e-3 per step,
and a whole chain by O(0.1)). The parity matrix's (precision, quantity) table (tests/test_parity.py) is made of these.
"""

# The reference samplers against a re-derivation written in the test: the same float32
# arithmetic in the same order, so only ~1 ulp of reordering remains.
REDERIVATION_ATOL = 1e-6

# One call of an fp32 network file (ONNX, TorchScript) against eager PyTorch: only the
# float32 summation order of convolutions differs (~1e-6 measured).
EPS_ATOL = 1e-4

# A whole fp32 sampler chain (DDIM-25, DDPM-500), runtime or export against the eager
# reference on the same noise: per-call rounding compounded over the steps (worst measured
# ~6e-5 for DDIM-25; docs/parity.md).
SAMPLE_ATOL = 1e-3

# Progressive distillation's target x~ put back through one DDIM step, against the teacher's two steps'
# z_i'' (tests/test_distill.py): float32 rounding of the target's solve (measured <= 9.5e-7 on the tiny and
# the demo model, 6 batches); 1e-5 leaves room for other CPUs' rounding, a wrong coefficient or index moves
# it by O(0.1).
DISTILL_TARGET_ATOL = 1e-5

# The runtime's step implementations (numpy update, fused step graph, unrolled loop
# graph) against each other: the same network, fused differently.
IMPL_ATOL = 1e-4

# Another runtime (C++, the browser) against the Python runtime for the same seed or noise:
# the same graphs, so only kernels' summation order differs (issue bound; measured 0 for C++
# on the same ORT build, up to ~1e-4 for onnxruntime-web's WebAssembly kernels).
CROSS_RUNTIME_ATOL = 1e-4
# The same for DPM-Solver++ runs (dpmpp, fast) in the browser: a few large steps amplify the
# kernels' ~2e-6 per call more than DDIM-25 does, in rare values. Measured on the bundled
# model over 38 browser calls (n 4-10, eta 0/0.4/1): 33 within 1e-4 everywhere, the worst
# 97.8% of values within 1e-4 and 9.5e-4 at most; eager PyTorch against native ONNX Runtime
# on the same seeds reaches 2.7e-4 (98.3% within 1e-4) and 4.3e-4: the trajectory, not the
# browser. So: >= SOLVER_CROSS_RUNTIME_SHARE of a call's values within CROSS_RUNTIME_ATOL,
# none beyond SOLVER_CROSS_RUNTIME_MAX.
SOLVER_CROSS_RUNTIME_SHARE = 0.97
SOLVER_CROSS_RUNTIME_MAX = 2e-3

# A served sprite against the in-process batch-1 call with the same seed: only ORT's
# batch-size-dependent rounding may differ (measured 0).
BATCHING_ATOL = 1e-5

# fp16 network, a whole DDIM chain against fp32 (tests/test_parity.py measures 0.11):
# half-precision eps errors (~3e-3 per call) compounded over the chain.
FP16_SAMPLE_ATOL = 0.25

# The DPM-Solver++ reference against diffusers' DPMSolverMultistepScheduler given the same
# alpha-bars: the same method in another order of float32 operations (sigma from alpha-bar,
# exp of lambda differences); measured 1.7e-5 at most over 4..20 calls, ODE and SDE forms.
DIFFUSERS_ATOL = 1e-4

# Sprite-FID (benchmarks/fid.py) against its closed form, relative to tr(S1) + tr(S2): float64
# eigendecompositions, where a singular covariance's rounding-level eigenvalues (~1e-16 of
# its scale) become ~1e-8 after the square root, summed over <= 128 dimensions. A real defect
# (a missing factor 2, a dropped trace, the wrong product) moves it by O(1) of the traces.
FID_RTOL = 1e-6

# One call of the fp16 network file against eager PyTorch: fp16 weights and activations, unit
# roundoff 4.9e-4 through ~20 layers on O(1) eps (the exporter's stated fp16 tolerance); a
# wrong op moves eps by >= 1e-2 in fp32, O(1) in fp16.
FP16_EPS_ATOL = 3e-2

# The int8 network's eps against eager, as relative RMS on the trained demo's unseen states:
# the exporter's held-out check measures 5.7% (docs/export.md), tests/test_precisions.py's
# states 5.5%; a broken calibration or a wrongly quantized op gives O(1). 10% keeps ~1.8x margin
# for other CPUs' int8 kernels while staying well below the exporter's 15%, which must also
# pass random-weight models (9.6%).
INT8_REL_RMS_TOL = 0.10
