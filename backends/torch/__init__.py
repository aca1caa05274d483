"""PyTorch backend: networks, weights, losses and training loops (SPEC sections 6, 7, 11)."""
