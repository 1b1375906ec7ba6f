"""Residual graph convolution over the template mesh (jraph), and pooling to tokens."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from mmtalker_jax.models.points import fourier_features


def _graph_convolution(senders: np.ndarray, receivers: np.ndarray, scale: np.ndarray,
                       nodes: jnp.ndarray) -> jnp.ndarray:
  """D^-1/2 (A+I) D^-1/2 on [...,V,C] nodes, the leading axes folded into the
  features (jraph takes [V, features]): one gather and one scatter.

  jraph's GraphConvolution sums over the edges; the self loops and the
  symmetric normalisation are applied around it with `scale` [V] = D^-1/2,
  computed once in numpy (MeshAssets). Left to jraph, the degrees would be
  a scatter-add over constant edges inside the step, which XLA constant-folds
  at every compile (over a second at BIWI's 23370 vertices).
  """
  lead, (v, c) = nodes.shape[:-2], nodes.shape[-2:]
  n = math.prod(lead)
  flat = jnp.moveaxis(nodes.reshape(n, v, c), 0, 1).reshape(v, n * c)
  flat = flat * jnp.asarray(scale)[:, None]
  graph = jraph.GraphsTuple(nodes=flat, edges=None, globals=None,
                            senders=jnp.asarray(senders), receivers=jnp.asarray(receivers),
                            n_node=jnp.asarray([v]), n_edge=jnp.asarray([len(senders)]))
  conv = jraph.GraphConvolution(update_node_fn=lambda x: x, add_self_edges=False,
                                symmetric_normalization=False)
  out = (conv(graph).nodes + flat) * jnp.asarray(scale)[:, None]
  return jnp.moveaxis(out.reshape(v, n, c), 1, 0).reshape(nodes.shape)


def _folded_under_vmap(senders: np.ndarray, receivers: np.ndarray, scale: np.ndarray):
  """The convolution as a function of the nodes whose vmap folds the mapped axis
  into the features too. Without this rule a vmapped GCN (a sweep's member
  axis) becomes a batched gather and scatter, which XLA's CPU backend runs
  several times slower than the same work on one wide array."""
  @jax.custom_batching.custom_vmap
  def convolve(nodes):
    return _graph_convolution(senders, receivers, scale, nodes)

  @convolve.def_vmap
  def _(axis_size, in_batched, nodes):  # nodes [axis_size, ..., V, C]
    del axis_size, in_batched
    return convolve(nodes), True

  return convolve


def normalized_aggregate(graph: jraph.GraphsTuple, scale: np.ndarray,
                         nodes: jnp.ndarray) -> jnp.ndarray:
  """Symmetric-normalised neighbour sum with self loops, D^-1/2 (A+I) D^-1/2 x.

  Linear in the nodes; its gradient is the same sum over the reversed edges
  (the transpose), so both passes keep the folding vmap rule above.

  Args:
    graph: the mesh graph; senders/receivers concrete (numpy) arrays.
    scale: [V] (degree + 1) ** -1/2, the degree counting self loops
      (`MeshAssets.gcn_scale`).
    nodes: [...,V,C] per-vertex features of meshes of that topology.

  Returns:
    [...,V,C].
  """
  senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
  forward = _folded_under_vmap(senders, receivers, scale)
  transpose = _folded_under_vmap(receivers, senders, scale)

  @jax.custom_vjp
  def aggregate(x):
    return forward(x)

  aggregate.defvjp(lambda x: (forward(x), None), lambda _, g: (transpose(g),))
  return aggregate(nodes)


class ResidualGCN(nn.Module):
  """Template [B,V,3] (+ UV [V,2]) -> per-vertex geometric features [B,V,D].

  Positions are centred and scaled per template (any unit, any mesh size).

  Attributes:
    graph: jraph.GraphsTuple of the topology (nodes unused).
    scale: [V] the symmetric normalisation (`MeshAssets.gcn_scale`).
    uv: [V,2] UV coordinates.
    width: D.
    num_blocks: residual blocks, each LN -> aggregate -> MLP -> add.
    uv_frequencies: Fourier octaves of the UV input.
  """
  graph: jraph.GraphsTuple
  scale: np.ndarray
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
    for i in range(self.num_blocks):
      y = normalized_aggregate(self.graph, self.scale, nn.LayerNorm(name=f"norm{i}")(h))
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
