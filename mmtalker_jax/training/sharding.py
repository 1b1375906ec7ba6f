"""The device mesh and how arrays are laid out on it.

One code path from one CPU to a pod. The mesh has two axes:

  member  a population's replicas (`config.sweep.member_devices`; 1 for a single run),
  data    the batch, split over the rest of the devices of every host.

Parameters and optimizer state are replicated over `data`; a population's
stacked states are split over `member`. Batches are split over `data` and
repeated over `member` (replicas of one seed see the same batch). Each member group holds
devices of every host, so each host still feeds only its own batch rows.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MEMBER, DATA = "member", "data"


def make_mesh(member_devices: int = 1) -> Mesh:
  """A (member, data) mesh over all devices of all processes.

  Raises:
    ValueError: if member_devices does not divide the device count.
  """
  devices = np.asarray(jax.devices())
  if member_devices < 1 or devices.size % member_devices:
    raise ValueError(f"sweep.member_devices={member_devices} must divide the "
                     f"{devices.size} devices")
  # devices are ordered by host: column j of the (data, member) grid takes every
  # member_devices-th device, so each member group spans all hosts.
  grid = devices.reshape(devices.size // member_devices, member_devices).T
  return Mesh(grid, (MEMBER, DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def member_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (member) axis split over the mesh's member axis."""
  return NamedSharding(mesh, P(MEMBER))


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh's data axis."""
  return NamedSharding(mesh, P(DATA))


def seed_batches_sharded(mesh: Mesh) -> NamedSharding:
  """One batch per seed stacked on a leading axis [S, b, ...]: the batch axis split over `data`."""
  return NamedSharding(mesh, P(None, DATA))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh,
                 stacked: bool = False) -> dict[str, jax.Array]:
  """Assembles each host's rows into global arrays sharded along the batch axis.

  stacked: the arrays are [S, b, ...], one batch per seed of a population
  (`pipeline.zipped`); the batch axis is then the second.
  """
  sharding = seed_batches_sharded(mesh) if stacked else batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
