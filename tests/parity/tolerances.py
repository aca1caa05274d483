"""Parity-ladder tolerances (SPEC section 10), shared by every torch-vs-MindSpore test."""

LOSS_VS_SPEC_RTOL = 1e-5   # loss value of a backend vs the numpy spec
GRAD_RTOL = 1e-4           # loss gradient w.r.t. inputs, backend vs backend
FORWARD_MAX_REL = 1e-4     # module forward from the same weights, eval mode
# Module forward in train mode: BatchNorm normalises with the statistics of the (small) batch,
# dividing by a batch standard deviation that can be small, so the ~1e-6 float32 convolution
# differences between the frameworks are amplified layer after layer; BN1d on 2-4 rows is the
# worst case. Also bounds the BN moving statistics that forward updates.
TRAIN_MAX_REL = 1e-3
STEP_ATOL = 1e-4           # parameters after one full optimizer step
CURVE_REL = 1e-2           # loss curve of a short synthetic training run (20 steps)
# Absolute floor of gradient comparisons, relative to the tensor's largest entry:
# atol = GRAD_ATOL_SCALE * max|g_torch| (MindSpore CPU Exp is off by up to 8e-6 relative; see KNOWN_GAPS.md).
GRAD_ATOL_SCALE = 1e-5
# Forward with train-mode BatchNorm (batch statistics), SPEC-10 report rung: dividing by the
# standard deviation of a small batch amplifies the ~4e-6 float32 convolution differences.
TRAIN_MAX_REL = 1e-3
