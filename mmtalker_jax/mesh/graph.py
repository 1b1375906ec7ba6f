"""The template's edge graph as a jraph GraphsTuple."""

from __future__ import annotations

import jraph
import numpy as np


def unique_edges(faces: np.ndarray) -> np.ndarray:
  """Undirected edges of a triangle mesh, [E,2] int32 with e[:,0] < e[:,1], sorted."""
  e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  e = np.sort(e, axis=1)
  return np.unique(e, axis=0).astype(np.int32)


def mesh_graph(faces: np.ndarray, num_vertices: int) -> jraph.GraphsTuple:
  """A GraphsTuple with one node per vertex and both directions of every edge.

  Nodes, edges and globals are None: features are attached per batch.

  Args:
    faces: [F,3] int vertex indices.
    num_vertices: V.

  Returns:
    GraphsTuple with senders/receivers [2E] int32, n_node [1] = V, n_edge [1] = 2E.
  """
  e = unique_edges(faces)
  senders = np.concatenate([e[:, 0], e[:, 1]]).astype(np.int32)
  receivers = np.concatenate([e[:, 1], e[:, 0]]).astype(np.int32)
  return jraph.GraphsTuple(
      nodes=None, edges=None, globals=None,
      senders=senders, receivers=receivers,
      n_node=np.array([num_vertices], np.int32),
      n_edge=np.array([len(senders)], np.int32))


def gcn_scale(graph: jraph.GraphsTuple, num_vertices: int) -> np.ndarray:
  """[V] float32 (degree + 1) ** -1/2: the symmetric GCN normalisation with self loops."""
  degree = np.bincount(np.asarray(graph.receivers), minlength=num_vertices) + 1
  return (1.0 / np.sqrt(degree)).astype(np.float32)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
  """Closed loops of boundary vertices (edges used by exactly one face).

  Returns:
    A list of [n_i] int arrays, the longest first; empty for a closed mesh.

  Raises:
    ValueError: if the boundary is not a set of simple loops (non-manifold).
  """
  e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
  key = np.sort(e, axis=1)
  _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
  if np.any(counts > 2):
    raise ValueError("an edge is shared by more than two faces (non-manifold)")
  directed = e[counts[inv.ravel()] == 1]
  nxt: dict[int, int] = {}
  for a, b in directed:
    if int(a) in nxt:
      raise ValueError(f"vertex {int(a)} lies on the boundary twice (non-manifold)")
    nxt[int(a)] = int(b)
  loops = []
  while nxt:
    start = next(iter(nxt))
    loop = [start]
    v = nxt.pop(start)
    while v != start:
      loop.append(v)
      if v not in nxt:
        raise ValueError("the boundary does not close into loops")
      v = nxt.pop(v)
    loops.append(np.array(loop, np.int64))
  loops.sort(key=len, reverse=True)
  return loops
