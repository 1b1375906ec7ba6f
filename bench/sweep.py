"""A sweep trained as one program against its replicas trained one after another.

  python bench/sweep.py [--config configs/sweep_density.py] [--batches 16] [--wall-steps 150]
                        [--seeds 0,1,2] [--group-size 12] [--sweep-only]

1. The step (in this process, on the same batches loaded up front): the
   vmapped step of the first program's M replicas (members x seeds, as
   sweep.group_size groups them) against each replica's own step, taken in
   turn on each batch (drift in the machine's speed hits every kind alike). Per step
   kind: compile time of each length bucket's first step, ms per step (the
   median of each bucket's later steps, averaged over buckets),
   how many times it compiled, and XLA's cost analysis (FLOPs and bytes
   accessed per step). Then the ratio taken apart: the vmapped step against M
   steps of the largest-K member (the same work: the sweep runs every member
   at the largest K under a point mask), the members' steps against those M
   steps (what the smaller-K members save when they run alone), and, for
   scale, the largest-K member alone at M x the batch against M of its steps
   (M times the work in one program without vmap).
2. The whole loop, as users run it: `train.py` on the sweep config for N
   steps against `train.py` on each replica's config for N steps, one after
   another (fresh processes; the corpus and its feature cache exist first;
   the sweep runs halfway through the members). Each run evaluates once, at
   its last step. Compilation caches start empty: one for the sweep, one
   shared by the members.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)

from bench.runs import run_measured  # noqa: E402


def cost(jitted, *args) -> tuple[float, float]:
  """(FLOPs, bytes accessed) of one call, from XLA's cost analysis."""
  analysis = jitted.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0)), float(analysis.get("bytes accessed", 0.0))


def time_interleaved(kinds, batches):
  """Runs every batch through every step kind in turn (sweep, replica 1, replica 2, ...),
  so a machine that speeds up or slows down mid-run weighs on all kinds alike.

  Args:
    kinds: list of [step_fn, state, key, view]; states are advanced in place;
      view(local batch) is the kind's global batch (built outside the timing).

  Returns:
    (compile s per bucket, {bucket: [steady s per step]}) per kind.
  """
  import jax
  compiles = [[] for _ in kinds]
  steady = [{} for _ in kinds]
  for local in batches:
    bucket = local["frame_mask"].shape[-1]
    for i, kind in enumerate(kinds):
      step_fn, state, key, view = kind
      arg = view(local)
      start = time.perf_counter()
      kind[1], metrics = step_fn(state, arg, key)
      jax.block_until_ready(metrics["loss"])
      elapsed = time.perf_counter() - start
      if bucket in steady[i]:
        steady[i][bucket].append(elapsed)
      else:
        compiles[i].append(elapsed)
        steady[i][bucket] = []
  return list(zip(compiles, steady))


def widen(local: dict, rows: int) -> dict:
  """The batch repeated `rows` times along its rows."""
  import numpy as np
  return {k: np.concatenate([v] * rows) for k, v in local.items()}


def typical(steady: dict) -> float:
  """Seconds per step: each bucket's median, averaged over buckets (spikes do not count)."""
  import numpy as np
  return float(np.mean([np.median(v) for v in steady.values() if v]))


def bench_step(config, config_path: str, num_batches: int) -> None:
  import jax
  import numpy as np

  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.data.pipeline import Batcher, zipped
  from mmtalker_jax.models.registry import build_model
  from mmtalker_jax.training import population, sharding, trainer
  from mmtalker_jax.training.optimizer import make_optimizer
  from mmtalker_jax.training.state import create_state

  trainer.ensure_corpus(config.data)
  corpus = Corpus(config.data)
  for seq in corpus:  # the feature cache, so part 2's runs all find it warm
    corpus.features(seq)
  # The first program of the population (sweep.group_size replicas).
  runs = population.groups(config, population.replicas_of(config, ""))[0]
  seeds = sorted({r.seed for r in runs})
  mesh = sharding.make_mesh(int(config.sweep.member_devices))
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(config.train)
  data = [Batcher(corpus, "train", config.train.global_batch_size, config.data.bucket_frames,
                  train=True, seed=seed, key_inputs=model.key_inputs) for seed in seeds]
  batches = [b for b, _ in zip(zipped(data), range(num_batches))]
  print(f"config             {config_path}: {len(runs)} replicas in one program "
        f"({', '.join(f'{r.name} K={r.num_points}' for r in runs)}), batch "
        f"{config.train.global_batch_size} per seed, {num_batches} batches over buckets "
        f"{sorted({b['frame_mask'].shape[-1] for b in batches})} frames, "
        f"{mesh.devices.size} {jax.default_backend()} device(s)")

  def seed_batch(local: dict, seed: int) -> dict:
    """The batch of `seed` alone (padded as in the program when it holds several seeds)."""
    return local if len(seeds) == 1 else {k: v[seeds.index(seed)] for k, v in local.items()}

  init = create_state(model, optimizer, config.data, jax.random.key(0), mesh)
  stacked = population.stack([init] * len(runs), mesh)
  keys = population.stack([population.sample_key(r.config) for r in runs], mesh)
  sweep_step = trainer.make_train_step(model, optimizer, config, mesh, runs)
  program_view = lambda local: sharding.global_batch(local, mesh, len(seeds) > 1)  # noqa: E731
  names, kinds, costs = ["program (vmapped)"], [[sweep_step, stacked, keys, program_view]], [
      cost(sweep_step.jitted, stacked, program_view(batches[0]), keys, *sweep_step.extra)]

  def alone(name: str, run, rows: int) -> None:
    """Adds `run` trained alone as a step kind, on its seed's batch repeated `rows` times."""
    step = trainer.make_train_step(model, optimizer, run.config, mesh, [run])
    state = population.stack([create_state(model, optimizer, config.data, jax.random.key(0),
                                           mesh)], mesh)
    key = population.stack([population.sample_key(run.config)], mesh)
    view = lambda local: sharding.global_batch(  # noqa: E731
        widen(seed_batch(local, run.seed), rows), mesh)
    names.append(name)
    kinds.append([step, state, key, view])
    costs.append(cost(step.jitted, state, view(batches[0]), key, *step.extra))

  for run in runs:
    alone(f"{run.name} alone", run, 1)
  # The widest member alone on M x the batch: M times the work in one program
  # without vmap, to tell what vmap costs from what larger arrays cost.
  widest = max(range(len(runs)), key=lambda i: runs[i].num_points)
  alone(f"{runs[widest].name} at {len(runs)}x batch", runs[widest], len(runs))
  timed = time_interleaved(kinds, batches)
  steady_m = timed[0][1]
  rows = [(name, comp, steady, kind[0].jitted._cache_size(), flops, nbytes)
          for name, (comp, steady), kind, (flops, nbytes) in zip(names, timed, kinds, costs)]
  print(f"{'':<30}{'compile s/bucket':>17}{'ms/step':>16}{'compiles':>10}"
        f"{'GFLOP/step':>12}{'GB/step':>10}")
  for name, comp, steady, n, flops, nbytes in rows:
    print(f"{name:<30}{np.mean(comp):>17.1f}{1e3 * typical(steady):>16.0f}{n:>10}"
          f"{flops / 1e9:>12.1f}{nbytes / 1e9:>10.2f}")
  print("per bucket, ms/step: " + "; ".join(
      f"{b}: sweep {1e3 * np.median(steady_m[b]):.0f}, members "
      + "+".join(f"{1e3 * np.median(r[2][b]):.0f}" for r in rows[1:-1])
      + f" = {1e3 * sum(np.median(r[2][b]) for r in rows[1:-1]):.0f}"
      for b in sorted(steady_m) if steady_m[b]))
  singles, wide_row = rows[1:-1], rows[-1]
  sum_steady = sum(typical(r[2]) for r in singles)
  # Paired: each batch's sweep step against the single steps on that batch,
  # seconds apart, so the machine's drift cancels; the median over batches.
  paired = [sweep_t / sum(r[2][b][i] for r in singles)
            for b in steady_m for i, sweep_t in enumerate(steady_m[b])]
  print(f"vmapped step / sum of the {len(runs)} single steps: "
        f"{np.median(paired):.3f}x step time (median over {len(paired)} batches of the "
        f"ratio on each; quartiles {np.percentile(paired, 25):.3f}-"
        f"{np.percentile(paired, 75):.3f}; ratio of the medians above "
        f"{typical(steady_m) / sum_steady:.3f}x), "
        f"{rows[0][4] / sum(r[4] for r in singles):.3f}x FLOPs, "
        f"{rows[0][5] / sum(r[5] for r in singles):.3f}x bytes")
  # The same decomposed: the sweep runs every member at the largest K (a point
  # mask hides the rest), so against M steps of a largest-K member it does the
  # same work; the members' own steps sum to less when some have a smaller K.
  full = [sweep_t / (len(runs) * singles[widest][2][b][i])
          for b in steady_m for i, sweep_t in enumerate(steady_m[b])]
  mix = [sum(r[2][b][i] for r in singles) / (len(runs) * singles[widest][2][b][i])
         for b in steady_m for i in range(len(steady_m[b]))]
  print(f"  of which: vmapped step / {len(runs)} x {runs[widest].name}'s step (K="
        f"{runs[widest].num_points}, the shape every member runs in the sweep) "
        f"{np.median(full):.3f}x (quartiles {np.percentile(full, 25):.3f}-"
        f"{np.percentile(full, 75):.3f}); the {len(runs)} members' steps / {len(runs)} x "
        f"{runs[widest].name}'s {np.median(mix):.3f}x")
  larger = [wide_row[2][b][i] / (len(runs) * singles[widest][2][b][i])
            for b in steady_m for i in range(len(wide_row[2][b]))]
  print(f"  for scale: {runs[widest].name} alone at {len(runs)}x the batch (one program, no "
        f"vmap) / {len(runs)} of its steps: {np.median(larger):.3f}x (quartiles "
        f"{np.percentile(larger, 25):.3f}-{np.percentile(larger, 75):.3f})")
  print(f"compilations: sweep {rows[0][3]} for {len(steady_m)} buckets; members one after another "
        f"{sum(r[3] for r in singles)}")


def run_train(args: list[str], peaks: list[float]) -> float:
  """train.py's wall time; its peak RSS (GiB) is appended to `peaks`."""
  wall, peak = run_measured([sys.executable, "train.py", *args], ROOT)
  peaks.append(peak)
  return wall


def bench_wall(config, config_path: str, overrides: list[str], steps: int,
               sweep_only: bool = False) -> None:
  from mmtalker_jax.training import population

  common = [f"--config.train.num_steps={steps}", f"--config.train.eval_every={steps}",
            f"--config.train.log_every={steps}"]
  runs = population.replicas_of(config, "")
  base_cfg = config_path.partition(":")[2] or "default"
  base = os.path.join(ROOT, "configs", f"{base_cfg}.py")
  with tempfile.TemporaryDirectory() as tmp:
    # As on a fresh machine: the sweep with an empty compilation cache, the
    # members sharing one (a member reuses what an earlier one compiled, e.g.
    # the evaluation). The sweep runs halfway through the members, so a
    # machine that drifts faster or slower weighs on both sides alike.
    member_peaks, sweep_peak = [], []

    def member(run) -> float:
      flags = [f"--config.sampler.{k}={v}" for k, v in run.config.sampler.items()]
      flags.append(f"--config.seed={run.seed}")
      return run_train(["--config", base, "--workdir", os.path.join(tmp, run.name),
                        "--compile_cache", os.path.join(tmp, "cache_members"), *common, *flags],
                       member_peaks)

    half = 0 if sweep_only else len(runs) // 2
    single = [member(run) for run in runs[:half]]
    sweep = run_train(["--config", config_path, "--workdir", os.path.join(tmp, "sweep"),
                       "--compile_cache", os.path.join(tmp, "cache_sweep"), *common, *overrides],
                      sweep_peak)
    if not sweep_only:
      single += [member(run) for run in runs[half:]]
  print(f"{steps}-step train.py wall (process start to exit, one evaluation at the end):")
  print(f"  the sweep ({len(runs)} replicas)   {sweep:7.1f} s")
  if sweep_only:
    print(f"peak RSS: the sweep {sweep_peak[0]:.2f} GiB")
    return
  print(f"  replicas one after another  {sum(single):7.1f} s  ("
        + " + ".join(f"{s:.1f}" for s in single) + ")")
  print(f"  ratio                       {sweep / sum(single):7.3f}x")
  print(f"peak RSS: the sweep {sweep_peak[0]:.2f} GiB; the replicas "
        + ", ".join(f"{p:.2f}" for p in member_peaks) + " GiB")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/sweep_density.py")
  parser.add_argument("--batches", type=int, default=32,
                      help="batches timed in part 1 (0: skip)")
  parser.add_argument("--wall-steps", type=int, default=150, help="steps of part 2 (0: skip)")
  parser.add_argument("--sweep-only", action="store_true",
                      help="part 2 runs the sweep alone (its wall and peak memory)")
  parser.add_argument("--seeds", default=None, help="sweep.seeds, e.g. 0,1,2 (default: the config's)")
  parser.add_argument("--group-size", type=int, default=None,
                      help="sweep.group_size (default: the config's)")
  args = parser.parse_args()
  os.chdir(ROOT)
  from mmtalker_jax.configlib import load_config
  config = load_config(args.config)
  overrides = []
  if args.seeds is not None:
    config.sweep.seeds = tuple(int(s) for s in args.seeds.split(","))
    overrides.append(f"--config.sweep.seeds={args.seeds}")
  if args.group_size is not None:
    config.sweep.group_size = args.group_size
    overrides.append(f"--config.sweep.group_size={args.group_size}")
  if args.batches:
    bench_step(config, args.config, args.batches)
  if args.wall_steps:
    bench_wall(config, args.config, overrides, args.wall_steps, args.sweep_only)


if __name__ == "__main__":
  main()
