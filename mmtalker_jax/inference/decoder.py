"""The one decode path: whole sequences to vertices, in chunks of frames.

Evaluation, `evaluate.py --save-pred/--render` and `predict.py` all call
`ChunkedDecoder`. A batch is encoded in one call (time and memory linear in
its length: every attention is local), the per-point features are computed
once, and the per-frame regressor runs over chunks of frames sized from a
memory budget (`config.decode.chunk_mib`), so [B,T,K,H] activations are never
held at once, whatever the batch and mesh size. Frames do not interact in the
regressor: chunking changes nothing in the result.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.models.registry import INPUTS, keys_of


# Regressor activations alive at once per [B,K,H] frame: measured with
# bench/memory.py (XLA's temporaries of a chunk are about 1.9x its hidden array).
_LIVE_COPIES = 2


def frames_per_chunk(batch: int, points: int, hidden: int, budget_mib: float) -> int:
  """Frames per decode call whose activations fit `budget_mib` MiB (at least one).

  A frame holds about _LIVE_COPIES arrays of [batch, points, hidden] float32
  (hidden: the model's `point_features`).
  """
  per_frame = batch * points * hidden * 4 * _LIVE_COPIES
  return max(1, int(budget_mib * 2**20 // per_frame))


def decode_budget(config) -> float:
  """config.decode.chunk_mib; runs saved before it existed get the default's 256."""
  return float(config.decode.get("chunk_mib", 256.0))


class ChunkedDecoder:
  """(params, inputs) -> vertices [B,T,K,3] = template + displacement, on the host.

  Args:
    model: the network.
    chunk_mib: the memory budget of one regressor call; its frame count
      follows from the batch, the points and the regressor's width
      (`frames_per_chunk`), one compiled chunk shape per batch and point count.
    to_host: turns a (possibly sharded, multi-host) device array into numpy;
      default np.asarray.
  """

  def __init__(self, model: nn.Module, chunk_mib: float,
               to_host: Callable[[jax.Array], np.ndarray] = np.asarray):
    self.model = model
    self.chunk_mib = float(chunk_mib)
    self.to_host = to_host
    self._encode = jax.jit(lambda p, keys, *x: model.apply({"params": p}, *x, keys=keys,
                                                           method=model.encode))
    self._points = jax.jit(lambda p, enc, f, b: model.apply(
        {"params": p}, enc, f, b, method=model.encode_points))

    def frames(p, pts, motion, mask, start, chunk):
      """Vertices of frames [start, start + chunk) (past T: padding)."""
      def window(x):  # [B,T,...] -> [B,chunk,...]
        x = jnp.pad(x, [(0, 0), (0, chunk)] + [(0, 0)] * (x.ndim - 2))
        return jax.lax.dynamic_slice_in_dim(x, start, chunk, 1)
      m = jax.tree.map(window, motion)  # 'motion' may be a dict of per-frame arrays
      k = window(mask)
      disp = model.apply({"params": p}, pts, m, k, method=model.decode_frames)
      return pts["template"][:, None] + disp

    self._frames = jax.jit(frames, static_argnames="chunk")

  def __call__(self, params, inputs: dict, points: tuple[np.ndarray, np.ndarray] | None = None,
               num_frames: int | None = None) -> np.ndarray:
    """Predicts every frame of a batch.

    Args:
      params: the model's parameters.
      inputs: 'audio' [B,F,n_mels], 'template' [B,V,3], 'style' [B],
        'frame_mask' [B,T] (numpy, or global device arrays), and the model's
        key-motion inputs (`registry.inputs_of`).
      points: (face_ids [K], bary [K,3]) to predict at; default every vertex.
      num_frames: keep only the first frames (default all T).

    Returns:
      [B,T',K,3] float32 numpy vertices; padded frames hold the template.
    """
    if points is None:
      points = self.model.assets.vertex_points()
    face_ids, bary = jnp.asarray(points[0]), jnp.asarray(points[1])
    encoded = self._encode(params, keys_of(self.model, inputs), *(inputs[k] for k in INPUTS))
    at_points = self._points(params, encoded, face_ids, bary)
    b, t = np.shape(inputs["frame_mask"])
    t_out = t if num_frames is None else min(int(num_frames), t)
    out = np.empty((b, t_out, len(points[0]), 3), np.float32)
    size = self.chunk_frames(b, len(points[0]))
    for c0 in range(0, t_out, size):
      c1 = min(c0 + size, t_out)
      chunk = self._frames(params, at_points, encoded["motion"], inputs["frame_mask"],
                           np.int32(c0), chunk=size)
      out[:, c0:c1] = self.to_host(chunk)[:, :c1 - c0]
    return out

  def chunk_frames(self, batch: int, points: int) -> int:
    """Frames per regressor call for `batch` rows at `points` points."""
    return frames_per_chunk(batch, points, int(self.model.point_features), self.chunk_mib)
