"""Residual graph convolution over the template mesh (jraph), and pooling to tokens."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import jraph
import numpy as np

from mmtalker_jax.models.points import fourier_features


def normalized_aggregate(graph: jraph.GraphsTuple, nodes: jnp.ndarray) -> jnp.ndarray:
  """Symmetric-normalised neighbour sum with self loops, D^-1/2 (A+I) D^-1/2 x.

  Args:
    graph: the mesh graph (senders/receivers, both edge directions).
    nodes: [B,V,C] per-vertex features of B meshes of that topology.

  Returns:
    [B,V,C].
  """
  b, v, c = nodes.shape
  # jraph's GCN takes [V, features]: fold the batch into the features.
  flat = jnp.moveaxis(nodes, 0, 1).reshape(v, b * c)
  conv = jraph.GraphConvolution(update_node_fn=lambda x: x, add_self_edges=True,
                                symmetric_normalization=True)
  out = conv(graph._replace(nodes=flat)).nodes
  return jnp.moveaxis(out.reshape(v, b, c), 1, 0)


class ResidualGCN(nn.Module):
  """Template [B,V,3] (+ UV [V,2]) -> per-vertex geometric features [B,V,D].

  Positions are centred and scaled per template (any unit, any mesh size).

  Attributes:
    graph: jraph.GraphsTuple of the topology (nodes unused).
    uv: [V,2] UV coordinates.
    width: D.
    num_blocks: residual blocks, each LN -> aggregate -> MLP -> add.
    uv_frequencies: Fourier octaves of the UV input.
  """
  graph: jraph.GraphsTuple
  uv: np.ndarray
  width: int
  num_blocks: int
  uv_frequencies: int

  @nn.compact
  def __call__(self, template: jnp.ndarray) -> jnp.ndarray:
    centred = template - template.mean(axis=1, keepdims=True)
    scale = jnp.sqrt(jnp.mean(jnp.sum(centred ** 2, axis=-1), axis=1, keepdims=True))
    pos = centred / scale[..., None]
    uv = jnp.broadcast_to(fourier_features(jnp.asarray(self.uv), self.uv_frequencies),
                          template.shape[:1] + (self.uv.shape[0], 2 + 4 * self.uv_frequencies))
    h = nn.Dense(self.width, name="input")(jnp.concatenate([pos, uv], axis=-1))
    graph = jraph.GraphsTuple(nodes=None, edges=None, globals=None,
                              senders=jnp.asarray(self.graph.senders),
                              receivers=jnp.asarray(self.graph.receivers),
                              n_node=jnp.asarray(self.graph.n_node),
                              n_edge=jnp.asarray(self.graph.n_edge))
    for i in range(self.num_blocks):
      y = normalized_aggregate(graph, nn.LayerNorm(name=f"norm{i}")(h))
      y = nn.Dense(self.width, name=f"fc{i}a")(y)
      h = h + nn.Dense(self.width, name=f"fc{i}b")(nn.gelu(y))
    return nn.LayerNorm(name="out_norm")(h)


class GeometryPooling(nn.Module):
  """[B,V,D] -> [B,G,D] tokens by a learned soft assignment of vertices to G slots."""
  num_tokens: int

  @nn.compact
  def __call__(self, features: jnp.ndarray) -> jnp.ndarray:
    assign = nn.softmax(nn.Dense(self.num_tokens, name="assign")(features), axis=-1)  # [B,V,G]
    tokens = jnp.einsum("bvg,bvd->bgd", assign, features)
    return tokens / (assign.sum(axis=1)[..., None] + 1e-6)
