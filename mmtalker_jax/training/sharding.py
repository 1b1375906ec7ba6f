"""The device mesh and how arrays are laid out on it.

One code path from one CPU to a pod: the mesh's data axis spans every device
of every host; batches are split along it, parameters and optimizer state are
replicated. Each host contributes its own rows of the global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(axis: str = "data") -> Mesh:
  """A 1-D mesh over all devices of all processes."""
  return Mesh(np.asarray(jax.devices()), (axis,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh's data axis."""
  return NamedSharding(mesh, P(mesh.axis_names[0]))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each host's rows into global arrays sharded along the batch axis."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
