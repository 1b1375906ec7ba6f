"""The optimizer: AdamW with linear warm-up and cosine decay, gradients clipped."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Warm-up from 0 over cfg.warmup_steps, then cosine decay to end_lr_factor x peak."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.num_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.end_lr_factor)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Args: cfg, the config's `train` section. Returns: the optax transformation."""
  return optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(learning_rate_schedule(cfg), weight_decay=cfg.weight_decay))
