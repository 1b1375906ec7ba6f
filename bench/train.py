"""Training throughput of a config: compile time, steps/s, mesh frames/s, recompiles.

  python bench/train.py [--config configs/default.py] [--steps 60] [--devices N]

Runs the real jitted, sharded train step on the config's corpus (generated if
missing). The first batch of every length bucket is timed as its compile; the
rest are timed as steady state. Prints how often the step compiled: at most once
per length bucket.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/default.py")
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--devices", type=int, default=0,
                      help="simulate this many CPU devices (0: the real ones)")
  args = parser.parse_args()
  if args.devices:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

  import jax
  import numpy as np

  from mmtalker_jax.configlib import load_config
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.data.pipeline import Batcher
  from mmtalker_jax.models.mmtalker import build_model
  from mmtalker_jax.training import members, sharding, trainer
  from mmtalker_jax.training import state as state_lib
  from mmtalker_jax.training.optimizer import make_optimizer

  config = load_config(args.config)
  trainer.ensure_corpus(config.data)
  corpus = Corpus(config.data)
  mesh = sharding.make_mesh()
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(config.train)
  state = state_lib.create_state(model, optimizer, config.data, jax.random.key(0), mesh)
  step_fn = trainer.make_train_step(model, optimizer, config, mesh,
                                    members.members_of(config, ""))
  data = Batcher(corpus, "train", config.train.global_batch_size, config.data.bucket_frames,
                 train=True, seed=config.seed)
  # Loaded up front, so data loading and feature caching are not timed.
  batches = [batch for batch, _ in zip(data.forever(), range(args.steps))]

  seen, compile_times, steady, frames = set(), [], [], 0
  key = jax.random.key(1)
  for local in batches:
    bucket = local["frame_mask"].shape[1]
    batch = sharding.global_batch(local, mesh)
    start = time.perf_counter()
    state, metrics = step_fn(state, batch, key)
    jax.block_until_ready(metrics["loss"])
    elapsed = time.perf_counter() - start
    if bucket in seen:
      steady.append(elapsed)
      frames += int(local["frame_mask"].sum())
    else:
      seen.add(bucket)
      compile_times.append(elapsed)
  compiles = step_fn.jitted._cache_size()
  total = sum(steady)
  print(f"config             {args.config} on {mesh.devices.size} {jax.default_backend()} device(s)")
  print(f"batch              {config.train.global_batch_size} sequences, K={config.sampler.num_points} "
        f"points, buckets {tuple(config.data.bucket_frames)} frames")
  print(f"compile            {np.mean(compile_times):.1f} s per bucket (first step of each of "
        f"{len(compile_times)} buckets, {sum(compile_times):.1f} s in all)")
  print(f"steady state       {len(steady) / total:.2f} steps/s, {frames / total:.0f} mesh frames/s "
        f"over {len(steady)} steps")
  print(f"compilations       {compiles} for {len(seen)} buckets seen "
        f"({'ok: at most one per bucket' if compiles <= len(seen) else 'RECOMPILED'})")


if __name__ == "__main__":
  main()
