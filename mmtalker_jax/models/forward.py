"""The forward pass every network shares: where to predict, encode, decode there.

A network (models/registry.py) supplies `surface_points`, `encode` and
`decode`; `forward` composes them into the (displacements, aux) pair the
training step, evaluation and prediction read, so the composition exists once.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmtalker_jax.mesh.assets import MeshAssets
from mmtalker_jax.models.sampler import SurfaceSample

VERTICES = "vertices"  # `points=VERTICES`: every vertex of the template


def given_points(assets: MeshAssets, points: Any) -> SurfaceSample:
  """VERTICES or (face_ids [K], bary [K,3]) as a sample whose points weigh 1 and
  have log p 0 (nothing was drawn)."""
  is_vertices = isinstance(points, str) and points == VERTICES
  face_ids, bary = assets.vertex_points() if is_vertices else points
  k = jnp.shape(face_ids)
  return SurfaceSample(face_ids, bary, jnp.ones(k, jnp.float32), jnp.zeros(k, jnp.float32))


def forward(model, audio: jnp.ndarray, template: jnp.ndarray, style: jnp.ndarray,
            frame_mask: jnp.ndarray, points: Any, num_points: int | None, sampler: Any,
            rows: int, targets: jnp.ndarray | None,
            keys: dict | None = None, chunk_frames: int = 0) -> tuple[jnp.ndarray, dict]:
  """`model`'s points (`surface_points`), `encode`, then `decode` at the points
  (`chunk_frames` > 0: `chunk_frames` frames at a time, `decode_in_chunks`).

  Returns:
    displacements [B,T,K,3] (K = V for VERTICES), and aux with
    'face_ids' [K] ([B,K] with rows), 'bary' [K,3], 'weights' [K] (importance
    weights p_area/p), 'log_p' [K] (log p of each point's face),
    'template' [B,K,3] (the neutral face at the points), 'encoded'
    (`encode`'s output, for decoding at other points without encoding again)
    and 'supervised' (`key_predictions`: {name: (displacements [B,T,K,3],
    frame mask [B,T])}, more outputs the loss scores against the truth).
  """
  sample = model.surface_points(points, num_points, sampler, rows)
  encoded = model.encode(audio, template, style, frame_mask, targets, keys)
  at_points = model.encode_points(encoded, sample.face_ids, sample.bary)
  displacements = decode_in_chunks(model, at_points, encoded["motion"], frame_mask,
                                   chunk_frames)
  aux = {"face_ids": sample.face_ids, "bary": sample.bary, "weights": sample.weights,
         "log_p": sample.log_p, "template": at_points["template"], "encoded": encoded,
         "supervised": model.key_predictions(at_points, encoded["motion"])}
  return displacements, aux


def decode_in_chunks(model, points: dict, motion: Any, frame_mask: jnp.ndarray,
                     chunk: int) -> jnp.ndarray:
  """`model.decode_frames` [B,T,K,3], `chunk` frames at a time under remat.

  Every network decodes each frame on its own, so the value is the same; what
  changes is memory: the decoder's per-(frame, point) activations [B,chunk,K,H]
  are the largest a step holds (all T frames of them at once otherwise), and
  the backward pass recomputes them chunk by chunk instead of keeping them,
  for one more forward pass of the decoder. chunk <= 0 or >= T: all at once.

  Args:
    points: `encode_points`' output; motion: [B,T,...] per-frame arrays (a
      dict of them with key motions); frame_mask: [B,T].
  """
  b, t = frame_mask.shape
  if chunk <= 0 or chunk >= t or model.is_initializing():
    return model.decode_frames(points, motion, frame_mask)

  def body(mdl, carry, xs):
    return carry, mdl.decode_frames(points, *xs)

  scan = nn.scan(nn.remat(body), variable_broadcast="params", split_rngs={"params": False})
  _, out = scan(model, None, frame_chunks((motion, frame_mask), chunk))
  return jnp.moveaxis(out, 0, 1).reshape(b, -1, *out.shape[3:])[:, :t]


def frame_chunks(tree: Any, chunk: int) -> Any:
  """Every [B,T,...] leaf as [n,B,chunk,...] (n = ceil(T / chunk)), zero past T,
  to scan over; frames past T carry a zero frame mask."""
  def split(x):
    b, t = x.shape[:2]
    n = -(-t // chunk)
    x = jnp.pad(x, [(0, 0), (0, n * chunk - t)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(b, n, chunk, *x.shape[2:]), 1, 0)
  return jax.tree.map(split, tree)
