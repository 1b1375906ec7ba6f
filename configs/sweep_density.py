"""A sampling-density sweep on SynthTalk: four runs trained as one program.

  python train.py --config configs/sweep_density.py --workdir runs/sweep \
      [--config.sweep.seeds=0,1,2]
  python evaluate.py --ckpt runs/sweep --out sweep.json
  python -m mmtalker_jax.viz.sweep runs/sweep --results sweep.json

`--config configs/sweep_density.py:tiny` sweeps on top of configs/tiny.py
(seconds; for tests and smoke runs).

Every member starts from the same parameters and sees the same batches (a
paired comparison); members differ only in how the surface is sampled.
Questions it answers: does supervising more points help (K 64 vs 256), does
the learned density beat area-uniform sampling at the same K, and does
fitting the error where the points fall (alpha 0) beat the unbiased
area-uniform objective (alpha 1)?
"""

import ml_collections

from configs import default, tiny


def get_config(base: str = "default") -> ml_collections.ConfigDict:
  bases = {"default": default, "tiny": tiny}
  if base not in bases:
    raise ValueError(f"sweep_density base must be one of {sorted(bases)}, not {base!r}")
  config = bases[base].get_config()
  k = int(config.sampler.num_points)  # the base's K (256 in default; tiny: 64)
  config.sweep = ml_collections.ConfigDict()
  # name -> overrides of config.sampler (num_points, temperature, epsilon,
  # mode, alpha, seed). Members of different K share one compiled step: all
  # draw the largest K and count their first K (draws are prefix-stable).
  # Each member spells out every setting, so any of them can be changed from
  # the command line (--config.sweep.members.area_k256.num_points=512).
  base = {key: v for key, v in config.sampler.items() if key != "seed"}
  config.sweep.members = ml_collections.ConfigDict({
      f"learned_k{k // 4}": dict(base, num_points=k // 4),
      f"learned_k{k}": dict(base, num_points=k),
      f"area_k{k}": dict(base, num_points=k, mode="area"),
      f"learned_k{k}_alpha0": dict(base, num_points=k, alpha=0.0),
  })
  # Seeds: every member is trained once per seed (parameter initialisation,
  # batch order and sample stream come from it), in members/<name>/seed_<s>/
  # when there are several: --config.sweep.seeds=0,1,2. evaluate.py then gives
  # each member's mean and 95% interval over seeds, and its paired difference
  # from `reference` (see docs/sweeps.md).
  config.sweep.seeds = (0,)
  config.sweep.reference = f"learned_k{k}"
  # Replicas per program, trained one program after another: 0 is one seed's
  # members per program, so memory does not grow with the seeds;
  # members x seeds puts every replica in one program (one compile per bucket).
  config.sweep.group_size = 0
  # Devices along the mesh's member axis: replicas spread over them instead of
  # every device holding every replica (must divide the replicas of a program
  # and the device count; the rest of the devices split the batch).
  config.sweep.member_devices = 1
  # Four replicas' steps take 1.6-2.3 GiB of temporaries per length bucket;
  # uncapped, tcmalloc kept 10.4 GB after 600 steps (the buckets fragment the
  # heap). Past the cap, free pages go back to the kernel (docs/training.md).
  config.train.host_memory_gib = 5.5
  return config
