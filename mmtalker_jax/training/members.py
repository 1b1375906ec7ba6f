"""The runs one training program trains: one, or the members of a sweep.

A config with a `sweep` section trains its members as one program (see
`trainer.train_and_evaluate`); member `name` is an ordinary run in
<workdir>/members/<name>/, whose config is the sweep's with the member's
overrides applied and the `sweep` section removed. Members share the seed
(so the same initial parameters and the same batches: a paired comparison)
and differ in their sampler settings and sample stream (`sampler.seed`,
by default a number derived from the member's name, so adding a member
leaves the others' streams alone). Members are kept in name order.
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmtalker_jax.models.sampler import SamplerSettings, sampler_settings
from mmtalker_jax.training import sharding

MEMBERS = "members"


@dataclasses.dataclass
class Member:
  """One run: its name ('' for a plain run), config and run folder."""
  name: str
  config: ml_collections.ConfigDict
  workdir: str

  @property
  def num_points(self) -> int:
    return int(self.config.sampler.num_points)

  @property
  def settings(self) -> SamplerSettings:
    return sampler_settings(self.config.sampler)


def is_sweep(config: ml_collections.ConfigDict) -> bool:
  return "sweep" in config


def is_sweep_dir(path: str) -> bool:
  """True for a sweep's workdir (it holds members/, not checkpoints/)."""
  return os.path.isdir(os.path.join(path, MEMBERS)) and not os.path.isdir(
      os.path.join(path, "checkpoints"))


def sweep_member_dirs(workdir: str) -> dict[str, str]:
  """{name: folder} of a sweep workdir's members, in name order."""
  root = os.path.join(workdir, MEMBERS)
  return {n: os.path.join(root, n) for n in sorted(os.listdir(root))
          if os.path.isdir(os.path.join(root, n))}


def members_of(config: ml_collections.ConfigDict, workdir: str) -> list[Member]:
  """The runs `config` describes.

  Raises:
    ValueError: naming a member whose overrides are unknown or invalid.
  """
  if not is_sweep(config):
    sampler_settings(config.sampler)
    return [Member("", config, workdir)]
  sweep = config.sweep
  if not sweep.members:
    raise ValueError("sweep.members is empty")
  out = []
  for name, overrides in sweep.members.items():
    if not name.replace("_", "").replace("-", "").isalnum():
      raise ValueError(f"sweep member name {name!r}: use letters, digits, '_' and '-'")
    member = config.copy_and_resolve_references()
    with member.unlocked():
      del member["sweep"]
    member.sampler.seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    for key, value in dict(overrides).items():
      if key not in member.sampler:
        raise ValueError(f"sweep member {name!r}: unknown sampler setting {key!r} "
                         f"(known: {sorted(member.sampler.keys())})")
      member.sampler[key] = value
    try:
      sampler_settings(member.sampler)
    except ValueError as e:
      raise ValueError(f"sweep member {name!r}: {e}") from None
    out.append(Member(name, member, os.path.join(workdir, MEMBERS, name)))
  return out


def sample_key(config: ml_collections.ConfigDict) -> jax.Array:
  """The run's sample stream: seed's stream 1, folded with sampler.seed when it is not 0."""
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  stream = int(config.sampler.get("seed", 0))
  return jax.random.fold_in(key, stream) if stream else key


def stacked_settings(members: list[Member]) -> tuple[SamplerSettings, jnp.ndarray, int]:
  """(settings with [M] arrays, point mask [M, K_max], K_max) of the members."""
  k_max = max(m.num_points for m in members)
  fields = zip(*(m.settings for m in members))
  settings = SamplerSettings(*(np.asarray(v, np.bool_ if isinstance(v[0], bool) else np.float32)
                               for v in fields))
  mask = np.stack([np.arange(k_max) < m.num_points for m in members]).astype(np.float32)
  return settings, mask, k_max


def stack(trees: list, mesh) -> object:
  """Pytrees (states, keys) stacked on a new leading member axis, split over `member`."""
  return jax.jit(lambda *t: jax.tree.map(lambda *x: jnp.stack(x), *t),
                 out_shardings=sharding.member_sharded(mesh))(*trees)
