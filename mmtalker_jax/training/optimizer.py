"""The optimizer: AdamW with linear warm-up and cosine decay, gradients clipped."""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Warm-up from 0 over cfg.warmup_steps, then cosine decay to end_lr_factor x peak."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.num_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.end_lr_factor)


def make_optimizer(cfg: ml_collections.ConfigDict,
                   frozen: Callable[[tuple[str, ...]], bool] | None = None
                   ) -> optax.GradientTransformation:
  """The optax transformation.

  Args:
    cfg: the config's `train` section.
    frozen: parameter path (names) -> whether it stays fixed (no update, no
      weight decay, no optimizer state); None: every parameter trains.
  """
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(learning_rate_schedule(cfg), weight_decay=cfg.weight_decay))
  if frozen is None:
    return tx

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if frozen(tuple(k.key for k in path)) else "train", params)

  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
