"""Training throughput of a config: compile time, steps/s, mesh frames/s, recompiles.

  python bench/train.py [--config configs/default.py] [--steps 60] [--devices N]
                        [--set train.points_per_row=False ...]
  python bench/train.py --processes 2 [--devices 4]
  python bench/train.py --whole 400 [--config configs/default.py] [--set ...]

Runs the real jitted, sharded train step on the config's corpus (generated if
missing). The first batch of every length bucket is timed as its compile; the
rest are timed as steady state. Prints how often the step compiled: at most once
per length bucket.

With --processes P, the same steps run twice, as 1 process x D devices and as
P processes x D/P devices joined on loopback (D = --devices, default 4; each
process feeds its rows of every global batch), and it prints mesh frames/s
for both: what the cross-process collectives cost on this machine.

Every mode prints the peak resident memory (RSS) of the process that trained.
With --whole N, `train.py` itself runs N steps (with an evaluation at the end
and the all-vertex loss on its schedule) in a fresh workdir, and its wall time
and peak RSS are printed: what a user's run holds in memory.
"""

import argparse
import ast
import json
import os
import resource
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)

from bench.runs import run_measured  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/default.py")
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="override a config field (a Python literal), e.g. "
                           "train.points_per_row=False")
  parser.add_argument("--devices", type=int, default=0,
                      help="simulate this many CPU devices (0: the real ones)")
  parser.add_argument("--processes", type=int, default=1,
                      help="compare 1 process with this many on loopback")
  parser.add_argument("--whole", type=int, default=0, metavar="N",
                      help="run train.py for N steps and report its wall time and peak RSS")
  parser.add_argument("--join", default=None, help=argparse.SUPPRESS)  # ADDRESS,N,I (a child)
  parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.whole:
    return whole_run(args)
  if args.processes > 1:
    return compare_processes(args)
  if args.devices:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

  import jax
  import numpy as np

  from mmtalker_jax.configlib import load_config
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.data.pipeline import Batcher
  from mmtalker_jax.models.registry import build_model
  from mmtalker_jax.training import population, sharding, trainer
  from mmtalker_jax.training import state as state_lib
  from mmtalker_jax.training.optimizer import make_optimizer

  if args.join:
    from mmtalker_jax import distributed

    address, n, i = args.join.split(",")
    distributed.join(address, int(n), int(i))
  config = load_config(args.config)
  for item in args.set:
    field, _, value = item.partition("=")
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = ast.literal_eval(value)
  trainer.ensure_corpus(config.data)
  corpus = Corpus(config.data)
  mesh = sharding.make_mesh()
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(config.train)
  replicas = population.replicas_of(config, "")[:1]
  state = population.stack([state_lib.create_state(model, optimizer, config.data,
                                                   jax.random.key(0), mesh)], mesh)
  step_fn = trainer.make_train_step(model, optimizer, config, mesh, replicas)
  data = Batcher(corpus, "train", config.train.global_batch_size, config.data.bucket_frames,
                 train=True, seed=config.seed, process_index=jax.process_index(),
                 process_count=jax.process_count(), key_inputs=model.key_inputs)
  # Loaded up front, so data loading and feature caching are not timed.
  batches = [batch for batch, _ in zip(data.forever(), range(args.steps))]

  seen, compile_times, steady, frames = set(), [], [], 0
  key = population.stack([jax.random.key(1)], mesh)
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
  if args.json:  # a child of compare_processes: this process's rows and time
    print(json.dumps({"frames": frames, "seconds": total, "steps": len(steady),
                      "compile": sum(compile_times)}))
    return
  print(f"config             {args.config} {' '.join(args.set)} on {mesh.devices.size} "
        f"{jax.default_backend()} device(s)")
  print(f"batch              {config.train.global_batch_size} sequences, K={config.sampler.num_points} "
        f"points, buckets {tuple(config.data.bucket_frames)} frames")
  print(f"compile            {np.mean(compile_times):.1f} s per bucket (first step of each of "
        f"{len(compile_times)} buckets, {sum(compile_times):.1f} s in all)")
  print(f"steady state       {len(steady) / total:.2f} steps/s, {frames / total:.0f} mesh frames/s "
        f"over {len(steady)} steps")
  print(f"compilations       {compiles} for {len(seen)} buckets seen "
        f"({'ok: at most one per bucket' if compiles <= len(seen) else 'RECOMPILED'})")
  print(f"peak RSS           {peak_rss_gib():.2f} GiB (this process)")


def peak_rss_gib() -> float:
  """Peak resident memory of this process."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def whole_run(args) -> None:
  """train.py for --whole steps, evaluating at the end, in a fresh workdir."""
  import tempfile

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory(prefix="mmtalker_bench_") as tmp:
    cmd = [sys.executable, os.path.join(root, "train.py"), "--config", args.config,
           "--workdir", os.path.join(tmp, "run"), f"--config.train.num_steps={args.whole}",
           f"--config.train.eval_every={args.whole}",
           *(f"--config.{item}" for item in args.set)]
    wall, peak = run_measured(cmd, root)
  print(f"config             {args.config} {' '.join(args.set)}: train.py, {args.whole} steps "
        f"and an evaluation")
  print(f"wall               {wall:.1f} s, process start to exit")
  print(f"peak RSS           {peak:.2f} GiB (train.py)")


def compare_processes(args) -> None:
  """1 process x D devices, then P processes x D/P devices: mesh frames/s of each."""
  devices = args.devices or 4
  if devices % args.processes:
    raise SystemExit(f"--devices={devices} does not split over --processes={args.processes}")
  base = [sys.executable, os.path.abspath(__file__), "--config", args.config, "--steps",
          str(args.steps), "--json", *(f"--set={item}" for item in args.set)]

  def launch(processes: int) -> dict:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      address = f"127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ,
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices // processes}"}
    procs = [subprocess.Popen(base + ([f"--join={address},{processes},{i}"] if processes > 1
                                      else []), env=env, stdout=subprocess.PIPE, text=True)
             for i in range(processes)]
    results = []
    for p in procs:
      out, _ = p.communicate()
      if p.returncode != 0:
        raise SystemExit(f"a {processes}-process run failed (exit {p.returncode})")
      results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(r["seconds"] for r in results)
    return {"frames_per_s": sum(r["frames"] for r in results) / seconds,
            "steps_per_s": results[0]["steps"] / seconds,
            "compile": max(r["compile"] for r in results)}

  print(f"config {args.config}, {args.steps} steps, {devices} simulated CPU devices in all")
  for processes in (1, args.processes):
    r = launch(processes)
    print(f"{processes} process(es) x {devices // processes} devices: "
          f"{r['frames_per_s']:7.0f} mesh frames/s, {r['steps_per_s']:.2f} steps/s "
          f"(compile {r['compile']:.1f} s)")


if __name__ == "__main__":
  main()
