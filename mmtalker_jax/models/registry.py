"""The networks the harness trains, by `config.model.name`.

Every network speaks one interface, MMTalker's (models/mmtalker.py), so the
trainer, evaluation and prediction never ask which one they hold:
  __call__(audio, template, style, frame_mask, points, num_points, sampler,
           rows, targets)              -> (displacements [B,T,K,3], aux)
  encode(audio, template, style, frame_mask[, targets, keys]) -> {'motion', ...}
  encode_points(encoded, face_ids, bary) -> per-point features + 'template'
  decode_frames(points, motion, frame_mask) -> [B,Tc,K,3]
  key_predictions(points, motion) -> {name: ([B,T,K,3], [B,T] frame mask)}
  decode, surface_points; fields assets, fps, feature_rate,
  displacement_scale; point_features (per-point floats a decoded frame holds);
  key_inputs (the batch entries `keys` holds: models/key_motion.py).
'motion' is [B,T,M] or a dict of [B,T,...] arrays; decoders slice every leaf
along T alike.
`targets` ([B,T,V,3] true vertices) is given in training only; a network may
read it (FaceFormer's teacher forcing). Dropout, where a network has any, is
on when the caller passes a 'dropout' RNG.
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from mmtalker_jax.mesh.assets import MeshAssets
from mmtalker_jax.models import faceformer, mmtalker

# The batch inputs every network takes, in the order `encode` and `__call__` take them.
INPUTS = mmtalker.INPUTS


def keys_of(model: nn.Module, batch) -> dict:
  """The key-motion entries of `batch` that `model` reads (its `keys` argument)."""
  return {k: batch[k] for k in model.key_inputs}


def inputs_of(model: nn.Module) -> tuple[str, ...]:
  """Every batch entry `model` reads: INPUTS, then its key-motion inputs."""
  return INPUTS + tuple(model.key_inputs)
BUILDERS = {"mmtalker": mmtalker.build_model, "faceformer": faceformer.build_model}


def build_model(config: ml_collections.ConfigDict, assets: MeshAssets,
                num_styles: int) -> nn.Module:
  """The network `config.model.name` names (default 'mmtalker'), sized by the config.

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  name = config.model.get("name", "mmtalker")
  if name not in BUILDERS:
    raise ValueError(f"config.model.name={name!r}: expected one of {', '.join(BUILDERS)}")
  return BUILDERS[name](config, assets, num_styles)
