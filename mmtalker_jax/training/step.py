"""The pure update step: sample points, predict, weigh the losses, apply gradients."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmtalker_jax import losses
from mmtalker_jax.models.mmtalker import VERTICES, MMTalker
from mmtalker_jax.models.points import interpolate
from mmtalker_jax.models.sampler import SamplerSettings
from mmtalker_jax.training.state import TrainState


def compute_losses(params, model: MMTalker, batch: dict, key: jax.Array,
                   loss_cfg: ml_collections.ConfigDict, num_points: int,
                   sampler: SamplerSettings, point_mask: jnp.ndarray | None = None,
                   with_vertex_loss: bool = False) -> tuple[jnp.ndarray, dict]:
  """The weighted training loss of one batch and its parts.

  Losses are measured in output units (displacement / displacement_scale), so
  their size does not depend on the corpus's length unit.

  Args:
    num_points, sampler: K and the sampling settings (`config.sampler`).
    with_vertex_loss: also add the plain MSE over every vertex (weighted by
      loss_cfg.vertex_weight); the trainer does so every loss_cfg.vertex_every steps.

  Returns:
    (total loss, {'loss', 'point_mse', 'velocity'[, 'vertex_mse']}).
  """
  disp, aux = model.apply({"params": params}, batch["audio"], batch["template"],
                          batch["style"], batch["frame_mask"], points=None,
                          num_points=num_points, sampler=sampler, rngs={"sample": key})
  target = interpolate(batch["vertices"], model.assets.faces, aux["face_ids"], aux["bary"])
  target = target - aux["template"][:, None]
  unit = 1.0 / model.displacement_scale
  pred, target = disp * unit, target * unit
  mask = batch["frame_mask"]
  weights = aux["weights"] ** sampler.alpha
  parts = {
      "point_mse": losses.point_mse(pred, target, weights, mask, point_mask),
      "velocity": losses.velocity_loss(pred, target, mask, weights, point_mask),
  }
  total = loss_cfg.point_weight * parts["point_mse"] + loss_cfg.velocity_weight * parts["velocity"]
  total = total + loss_cfg.point_weight * losses.density_surrogate(
      pred, target, aux["weights"], aux["log_p"], mask, point_mask)
  if with_vertex_loss:
    full, _ = model.apply({"params": params}, batch["audio"], batch["template"],
                          batch["style"], mask, points=VERTICES)
    truth = batch["vertices"] - batch["template"][:, None]
    parts["vertex_mse"] = losses.vertex_mse(full * unit, truth * unit, mask)
    total = total + loss_cfg.vertex_weight * parts["vertex_mse"]
  parts["loss"] = total
  return total, parts


def train_step(state: TrainState, batch: dict, key: jax.Array, sampler: SamplerSettings,
               point_mask: jnp.ndarray | None = None, *, model: MMTalker,
               optimizer: optax.GradientTransformation, loss_cfg: ml_collections.ConfigDict,
               num_points: int, with_vertex_loss: bool = False) -> tuple[TrainState, dict]:
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
                                sampler, point_mask, with_vertex_loss=with_vertex_loss)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  metrics["param_norm"] = optax.tree.norm(params)
  return TrainState(state.step + 1, params, opt_state), metrics
