"""The runs one training program trains: a population of replicas.

A plain config is a population of one: the run in its workdir. A config with
a `sweep` section is members x seeds: `sweep.members` names overrides of
`config.sampler`, `sweep.seeds` lists seeds (default: `config.seed` alone).
Replica (member, seed) is an ordinary run in

  <workdir>/members/<member>/seed_<seed>/    (several seeds)
  <workdir>/members/<member>/                (one seed)

whose config is the sweep's with the member's overrides applied, `seed` set
and the `sweep` section removed. Everything random in a run comes from its
seed: initial parameters, batch order, crops and the sample stream. Members
of one seed therefore start from the same parameters and see the same batches
(common random numbers: differences between members are paired); they differ
in their sampler settings and sample stream (`sampler.seed`, by default a
number derived from the member's name, so adding a member leaves the others'
streams alone).

Replicas are ordered seed-major (every member of the first seed, then of the
next, members in name order) and trained in programs of `sweep.group_size`
replicas, one program after another (`groups`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.models.sampler import SamplerSettings, sampler_settings
from mmtalker_jax.training import sharding

MEMBERS = "members"
_SEED_DIR = re.compile(r"^seed_(\d+)$")


@dataclasses.dataclass
class Replica:
  """One run: its member ('' for a plain run), seed, config and run folder."""
  member: str
  seed: int
  config: ml_collections.ConfigDict
  workdir: str
  several_seeds: bool = False

  @property
  def name(self) -> str:
    return row_name(self.member, self.seed, self.several_seeds)

  @property
  def num_points(self) -> int:
    return int(self.config.sampler.num_points)

  @property
  def settings(self) -> SamplerSettings:
    return sampler_settings(self.config.sampler)


def row_name(member: str, seed: int, several_seeds: bool) -> str:
  """'model' for a plain run, else the member, with '/seed_<s>' when it has several seeds."""
  base = member or "model"
  return f"{base}/seed_{seed}" if several_seeds else base


def is_sweep(config: ml_collections.ConfigDict) -> bool:
  return "sweep" in config


def seeds_of(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The sweep's seeds: `sweep.seeds`, or `config.seed` alone when it is unset.

  Raises:
    ValueError: for repeated or negative seeds.
  """
  seeds = config.sweep.get("seeds") if is_sweep(config) else None
  if seeds is None:
    return (int(config.seed),)
  if isinstance(seeds, (int, np.integer)):
    seeds = (seeds,)
  seeds = tuple(int(s) for s in seeds)
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f"sweep.seeds={seeds}: give distinct seeds >= 0")
  return seeds


def replicas_of(config: ml_collections.ConfigDict, workdir: str) -> list[Replica]:
  """The runs `config` describes, seed-major.

  Raises:
    ValueError: naming a member whose overrides are unknown or invalid.
  """
  if not is_sweep(config):
    sampler_settings(config.sampler)
    return [Replica("", int(config.seed), config, workdir)]
  sweep = config.sweep
  if not sweep.members:
    raise ValueError("sweep.members is empty")
  seeds = seeds_of(config)
  several = len(seeds) > 1
  members = []
  for name, overrides in sorted(sweep.members.items()):
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
    members.append((name, member))
  out = []
  for seed in seeds:
    for name, member in members:
      replica = member.copy_and_resolve_references()
      replica.seed = seed
      folder = os.path.join(workdir, MEMBERS, name, *([f"seed_{seed}"] if several else []))
      out.append(Replica(name, seed, replica, folder, several))
  return out


def groups(config: ml_collections.ConfigDict, replicas: list[Replica]) -> list[list[Replica]]:
  """The replicas in programs of `sweep.group_size` replicas, trained one after another.

  0 (the default): one seed's members per program, so a sweep's memory does
  not grow with its seeds; members x seeds: everything in one program.
  """
  size = int(config.sweep.get("group_size", 0) or 0) if is_sweep(config) else 0
  if size < 0:
    raise ValueError(f"sweep.group_size={size} must be >= 0")
  size = size or len(replicas) // len({r.seed for r in replicas})
  return [replicas[i:i + size] for i in range(0, len(replicas), size)]


def member_devices(config: ml_collections.ConfigDict) -> int:
  """Devices of the mesh's member axis: `sweep.member_devices`, 1 for a plain run."""
  return int(config.sweep.member_devices) if is_sweep(config) else 1


def reference_of(workdir: str, members: list[str]) -> str:
  """The member differences are taken from: the sweep's `sweep.reference`
  (<workdir>/config.json), else the first member."""
  path = os.path.join(workdir, "config.json")
  sweep = fileio.read_json(path).get("sweep", {}) if os.path.isfile(path) else {}
  return sweep.get("reference") or members[0]


def is_population_dir(path: str) -> bool:
  """True for a sweep's workdir (it holds members/, not checkpoints/)."""
  return os.path.isdir(os.path.join(path, MEMBERS)) and not os.path.isdir(
      os.path.join(path, "checkpoints"))


def gather(paths: list[str]) -> tuple[dict[str, dict[int, str]], dict[str, str]]:
  """What evaluate.py's --ckpt paths name: ({member: {seed: run folder}},
  {member: the path it came from}).

  One run folder is a population of one (member ''). Several paths must be
  population workdirs with distinct member names; they are evaluated together
  and compared seed by seed (populations of different models: configs/seeds.py).

  Raises:
    InputError: naming the path, for a run folder among several, an empty
      population or a member name two paths share.
  """
  if len(paths) == 1 and not is_population_dir(paths[0]):
    return {"": {0: paths[0]}}, {"": paths[0]}
  folders: dict[str, dict[int, str]] = {}
  origin: dict[str, str] = {}
  for path in paths:
    if not is_population_dir(path):
      raise InputError(path, "not a sweep's workdir: several --ckpt compare populations "
                       "(configs/seeds.py trains any config as one)")
    found = replica_dirs(path)
    if not found:
      raise InputError(path, "its members/ folder holds no run")
    for member in found:
      if member in folders:
        raise InputError(path, f"member {member!r} is also in {origin[member]}; compared "
                         "populations need distinct member names")
      origin[member] = path
    folders.update(found)
  return folders, origin


def replica_dirs(workdir: str) -> dict[str, dict[int, str]]:
  """{member: {seed: run folder}} of a sweep's workdir, members and seeds in order.

  A member with one seed keeps its run in members/<member>/ and its seed in
  the config.json there.
  """
  root = os.path.join(workdir, MEMBERS)
  out: dict[str, dict[int, str]] = {}
  for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      continue
    seeds = {int(m.group(1)): os.path.join(folder, d) for d in os.listdir(folder)
             if (m := _SEED_DIR.match(d)) and os.path.isdir(os.path.join(folder, d))}
    if not seeds and os.path.isfile(os.path.join(folder, "config.json")):
      seeds = {int(fileio.read_json(os.path.join(folder, "config.json")).get("seed", 0)): folder}
    if seeds:
      out[name] = dict(sorted(seeds.items()))
  return out


def sample_key(config: ml_collections.ConfigDict) -> jax.Array:
  """The run's sample stream: seed's stream 1, folded with sampler.seed when it is not 0."""
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  stream = int(config.sampler.get("seed", 0))
  return jax.random.fold_in(key, stream) if stream else key


def stacked_settings(replicas: list[Replica]) -> tuple[SamplerSettings, np.ndarray | None, int]:
  """(settings with [R] arrays, point mask [R, K_max], K_max) of the replicas;
  the mask is None when every replica supervises every vertex (K = 0).

  Raises:
    ValueError: for a program mixing K = 0 with sampled points.
  """
  k_max = max(r.num_points for r in replicas)
  if k_max and min(r.num_points for r in replicas) == 0:
    raise ValueError("sweep members with sampler.num_points=0 (every vertex) and with "
                     "sampled points cannot share a program")
  fields = zip(*(r.settings for r in replicas))
  settings = SamplerSettings(*(np.asarray(v, np.bool_ if isinstance(v[0], bool) else np.float32)
                               for v in fields))
  if not k_max:
    return settings, None, 0
  mask = np.stack([np.arange(k_max) < r.num_points for r in replicas]).astype(np.float32)
  return settings, mask, k_max


def stack(trees: list, mesh) -> object:
  """Pytrees (states, keys) stacked on a new leading replica axis, split over `member`."""
  return jax.jit(lambda *t: jax.tree.map(lambda *x: jnp.stack(x), *t),
                 out_shardings=sharding.member_sharded(mesh))(*trees)
