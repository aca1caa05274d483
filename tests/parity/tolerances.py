"""Parity-ladder tolerances (SPEC section 10), shared by every torch-vs-MindSpore test."""

LOSS_VS_SPEC_RTOL = 1e-5   # loss value of a backend vs the numpy spec
GRAD_RTOL = 1e-4           # loss gradient w.r.t. inputs, backend vs backend
FORWARD_MAX_REL = 1e-4     # module forward from the same weights, eval mode
STEP_ATOL = 1e-4           # parameters after one full optimizer step
CURVE_REL = 1e-2           # loss curve of a short synthetic training run (20 steps)
# Absolute floor of gradient comparisons, relative to the tensor's largest entry:
# atol = GRAD_ATOL_SCALE * max|g_torch| (MindSpore CPU Exp is off by up to 8e-6 relative; see KNOWN_GAPS.md).
GRAD_ATOL_SCALE = 1e-5
# Losses that run the original MVD code's Sinkhorn iteration (eps = 0.01) divide float32 costs
# and potentials by eps in every update, so float32 itself is ~1/eps less accurate there
# (see KNOWN_GAPS.md). Value vs spec: torch reaches 8.3e-6, MindSpore 1.4e-5 (300 seeds):
SINKHORN_VS_SPEC_RTOL = 5e-5
# Gradient floor, x max|g|: float32 is off from float64 by up to 6e-5 in both backends;
# torch vs MindSpore needs up to 9e-5 (100 seeds, case mvd_original):
SINKHORN_GRAD_ATOL_SCALE = 2e-4
