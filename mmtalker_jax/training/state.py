"""The train state and its creation, shared by the trainer and checkpoint readers."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmtalker_jax import alignment
from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax.models.registry import INPUTS, keys_of
from mmtalker_jax.training import sharding


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; sharded and checkpointed)."""
  step: jnp.ndarray
  params: Any
  opt_state: Any


def example_inputs(model, data_cfg: ml_collections.ConfigDict, batch_size: int,
                   num_frames: int) -> dict:
  """Zero inputs of the model's batch shapes (for init and abstract restores)."""
  f = alignment.num_feature_frames(num_frames, model.fps, model.feature_rate)
  channels = audio_lib.num_channels(dict(data_cfg.features))
  v = model.assets.num_vertices
  inputs = {"audio": np.zeros((batch_size, f, channels), np.float32),
            "template": np.repeat(model.assets.vertices[None], batch_size, 0),
            "style": np.zeros((batch_size,), np.int32),
            "frame_mask": np.ones((batch_size, num_frames), np.float32),
            "key_visemes": np.zeros((batch_size, num_frames), np.int32),
            "key_motion": np.zeros((batch_size, num_frames, v, 3), np.float32)}
  return {k: inputs[k] for k in INPUTS + tuple(model.key_inputs)}


def create_state(model, optimizer, data_cfg: ml_collections.ConfigDict, key: jax.Array,
                 mesh, initial: dict | None = None) -> TrainState:
  """Initialises parameters and optimizer state directly onto their shardings.

  Args:
    initial: a partial parameter tree (e.g. a pretrained speech encoder's)
      that replaces the random initial values at its paths; shapes must match.
  """
  x = example_inputs(model, data_cfg, 1, min(data_cfg.bucket_frames))

  def init(key, initial):
    params = model.init({"params": key}, *(x[k] for k in INPUTS), keys=keys_of(model, x))["params"]
    params = _overlay(params, initial or {})
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))

  return jax.jit(init, out_shardings=sharding.replicated(mesh))(key, initial)


def _overlay(params: dict, initial: dict) -> dict:
  """`params` with the leaves of `initial` put in place (same paths, same shapes)."""
  out = dict(params)
  for name, sub in initial.items():
    if isinstance(sub, dict):
      out[name] = _overlay(params[name], sub)
    else:
      if params[name].shape != sub.shape:
        raise ValueError(f"initial value of {name} has shape {sub.shape}, the model's "
                         f"is {params[name].shape}")
      out[name] = jnp.asarray(sub, params[name].dtype)
  return out
