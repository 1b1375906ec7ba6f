"""The pure update step: sample points, predict, weigh the losses, apply gradients."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmtalker_jax import losses
from mmtalker_jax.models.registry import INPUTS, keys_of
from mmtalker_jax.models.forward import VERTICES, frame_chunks
from mmtalker_jax.models.points import interpolate
from mmtalker_jax.models.sampler import SamplerSettings
from mmtalker_jax.training.state import TrainState


def compute_losses(params, model: nn.Module, batch: dict, key: jax.Array,
                   loss_cfg: ml_collections.ConfigDict, num_points: int,
                   sampler: SamplerSettings, point_mask: jnp.ndarray | None = None,
                   with_vertex_loss: bool = False,
                   points_per_row: bool = False) -> tuple[jnp.ndarray, dict]:
  """The weighted training loss of one batch and its parts.

  Losses are measured in output units (displacement / displacement_scale), so
  their size does not depend on the corpus's length unit.

  Args:
    num_points, sampler: K and the sampling settings (`config.sampler`); K = 0
      supervises every vertex.
    with_vertex_loss: also add the plain MSE over every vertex (weighted by
      loss_cfg.vertex_weight); the trainer does so every loss_cfg.vertex_every steps.
    points_per_row: each batch row gets its own K points (`config.train.points_per_row`);
      otherwise all rows share one set.

  Returns:
    (total loss, {'loss', 'point_mse', 'velocity'[, 'vertex_mse']}).
  """
  mask = batch["frame_mask"]
  rows = mask.shape[0] if points_per_row else 0
  # num_points = 0: every vertex, each weighing 1 (a model that draws no points).
  disp, aux = model.apply({"params": params}, *(batch[k] for k in INPUTS),
                          points=None if num_points else VERTICES, num_points=num_points,
                          sampler=sampler, rows=rows, targets=batch["vertices"],
                          keys=keys_of(model, batch),
                          chunk_frames=int(loss_cfg.get("point_chunk_frames", 0)),
                          rngs={"sample": key, "dropout": jax.random.fold_in(key, 1)})
  target = interpolate(batch["vertices"], model.assets.faces, aux["face_ids"], aux["bary"])
  target = target - aux["template"][:, None]
  unit = 1.0 / model.displacement_scale
  pred, target = disp * unit, target * unit
  weights = aux["weights"] ** sampler.alpha
  parts = {
      "point_mse": losses.point_mse(pred, target, weights, mask, point_mask),
      "velocity": losses.velocity_loss(pred, target, mask, weights, point_mask),
  }
  total = loss_cfg.point_weight * parts["point_mse"] + loss_cfg.velocity_weight * parts["velocity"]
  total = total + loss_cfg.point_weight * losses.density_surrogate(
      pred, target, aux["weights"], aux["log_p"], mask, point_mask)
  # More outputs of the same displacements, each on its own frames (key-motion
  # acquisition at key frames: models/key_motion.py), weighted by
  # loss_cfg.<name>_weight (default 1).
  for name, (extra, frames) in aux["supervised"].items():
    parts[name] = losses.point_mse(extra * unit, target, weights, frames, point_mask)
    total = total + loss_cfg.get(f"{name}_weight", 1.0) * parts[name]
  if with_vertex_loss:
    # Encoded once: the all-vertex loss decodes the same encoding at every vertex.
    parts["vertex_mse"] = vertex_mse(params, model, aux["encoded"], batch, unit,
                                     int(loss_cfg.get("vertex_chunk_frames", 0)))
    total = total + loss_cfg.vertex_weight * parts["vertex_mse"]
  parts["loss"] = total
  return total, parts


def vertex_mse(params, model: nn.Module, encoded: dict, batch: dict, unit: float,
               chunk: int) -> jnp.ndarray:
  """The plain squared error at every vertex, in output units (`losses.vertex_mse`).

  `encoded` is `model.encode` of the batch (shared with the point loss).
  chunk > 0: the vertex features are computed once, then the regressor runs
  over `chunk` frames at a time inside a scan under
  remat, so the largest activation is [B, chunk, V, H] instead of [B, T, V, H]
  in the forward and backward pass. The value and gradient are the same.
  """
  mask = batch["frame_mask"]
  truth = (batch["vertices"] - batch["template"][:, None]) * unit  # [B,T,V,3]
  t = mask.shape[1]
  apply = functools.partial(model.apply, {"params": params})
  face_ids, bary = model.assets.vertex_points()
  if chunk <= 0 or chunk >= t:
    full, _ = apply(encoded, face_ids, bary, mask, method=model.decode)
    return losses.vertex_mse(full * unit, truth, mask)
  points = apply(encoded, face_ids, bary, method=model.encode_points)

  @jax.checkpoint
  def squared_error(motion, frames, target):
    disp = apply(points, motion, frames, method=model.decode_frames) * unit
    return jnp.sum(jnp.sum((disp - target) ** 2, -1).mean(-1) * frames)

  def body(total, xs):
    return total + squared_error(*xs), None

  total, _ = jax.lax.scan(body, jnp.zeros((), truth.dtype),
                          frame_chunks((encoded["motion"], mask, truth), chunk))
  return total / jnp.maximum(jnp.sum(mask), 1.0)


def train_step(state: TrainState, batch: dict, key: jax.Array, sampler: SamplerSettings,
               point_mask: jnp.ndarray | None = None, *, model: nn.Module,
               optimizer: optax.GradientTransformation, loss_cfg: ml_collections.ConfigDict,
               num_points: int, with_vertex_loss: bool = False,
               points_per_row: bool = False) -> tuple[TrainState, dict]:
  """One optimizer update. `key` is folded with the step for the sample stream.

  A sweep maps this over members (`jax.vmap` over state, key, sampler and
  point_mask; the batch is shared): each member draws `num_points` (the
  largest K) points and counts the first K of its own through `point_mask`
  [num_points]. Draws are prefix-stable, so those are the K points a run
  with K points draws.
  """
  step_key = jax.random.fold_in(key, state.step)
  grad_fn = jax.value_and_grad(compute_losses, has_aux=True)
  (_, metrics), grads = grad_fn(state.params, model, batch, step_key, loss_cfg, num_points,
                                sampler, point_mask, with_vertex_loss=with_vertex_loss,
                                points_per_row=points_per_row)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  metrics["param_norm"] = optax.tree.norm(params)
  return TrainState(state.step + 1, params, opt_state), metrics
