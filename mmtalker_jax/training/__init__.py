"""Training: state, the update step, the loop, checkpoints."""
