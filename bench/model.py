"""Model figures: parameters, compile time, forward time and peak memory; the sampler's time.

10 s of audio (T = 300 frames at 30 fps) at V = 5023 all-vertex output, batch 1,
with the default config's model on this machine's JAX backend. Then the
triangle sampler (jitted, per call) at BIWI's face count for several K.

  python bench/model.py [--vertices 5023] [--seconds 10] [--repeats 5]
                        [--sampler-faces 46000] [--sampler-points 256 1024 4096]
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.spatial  # noqa: E402

from configs import default  # noqa: E402
from mmtalker_jax import alignment  # noqa: E402
from mmtalker_jax.mesh.assets import build_mesh_assets  # noqa: E402
from mmtalker_jax.models.registry import build_model  # noqa: E402
from mmtalker_jax.models.sampler import sample_triangles  # noqa: E402


def sampler_time(num_faces: int, num_points: int, repeats: int) -> float:
  """Median seconds per jitted draw of `num_points` points over `num_faces` faces."""
  logits = jax.random.normal(jax.random.key(0), (num_faces,))
  areas = jax.random.uniform(jax.random.key(1), (num_faces,), minval=0.5, maxval=1.5)
  draw = jax.jit(lambda lg, a, k: sample_triangles(lg, a, k, num_points, 1.0, 0.05))
  jax.block_until_ready(draw(logits, areas, jax.random.key(2)))
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(draw(logits, areas, jax.random.key(3 + i)))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def disk_face(num_vertices: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  r = np.sqrt(rng.uniform(0, 1, num_vertices))
  a = rng.uniform(0, 2 * np.pi, num_vertices)
  xy = 0.08 * np.stack([r * np.cos(a), r * np.sin(a)], 1)
  faces = scipy.spatial.Delaunay(xy).simplices.astype(np.int32)
  z = 0.05 * np.sqrt(1.2 - r ** 2)
  return np.concatenate([xy, z[:, None]], 1).astype(np.float32), faces


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--vertices", type=int, default=5023)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--sampler-faces", type=int, default=46_000)
  parser.add_argument("--sampler-points", type=int, nargs="+", default=[256, 1024, 4096])
  args = parser.parse_args()

  config = default.get_config()
  fps = config.data.fps
  rate = config.data.features.feature_rate
  t = int(round(args.seconds * fps))
  assets = build_mesh_assets(*disk_face(args.vertices))
  model = build_model(config, assets, num_styles=8)
  f = alignment.num_feature_frames(t, fps, rate)
  x = dict(audio=jnp.zeros((1, f, config.data.features.n_mels)),
           template=jnp.asarray(assets.vertices)[None], style=jnp.zeros((1,), jnp.int32),
           frame_mask=jnp.ones((1, t)))
  params = jax.jit(model.init)({"params": jax.random.key(0)}, **x)["params"]
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))

  forward = jax.jit(lambda p, x: model.apply({"params": p}, **x)[0])
  start = time.perf_counter()
  compiled = forward.lower(params, x).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  compiled(params, x).block_until_ready()
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    compiled(params, x).block_until_ready()
    times.append(time.perf_counter() - start)
  peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

  print(f"backend            {jax.default_backend()} ({jax.device_count()} device(s))")
  print(f"input              {args.seconds:g} s audio, T={t} frames, F={f} feature frames, "
        f"V={assets.num_vertices}, faces={assets.num_faces}")
  print(f"parameters         {n_params:,} ({n_params - assets.num_faces:,} without the "
        f"{assets.num_faces:,} face logits)")
  print(f"compile            {compile_s:.2f} s")
  print(f"forward            {np.median(times) * 1000:.1f} ms median of {args.repeats} "
        f"(min {min(times) * 1000:.1f} ms), {args.seconds / np.median(times):.1f}x real time")
  if mem is not None:
    print(f"XLA buffers        temp {mem.temp_size_in_bytes / 2**20:.1f} MiB, "
          f"args {mem.argument_size_in_bytes / 2**20:.1f} MiB, "
          f"output {mem.output_size_in_bytes / 2**20:.1f} MiB")
  print(f"peak process RSS   {peak_rss:.0f} MiB")
  for k in args.sampler_points:
    ms = sampler_time(args.sampler_faces, k, max(args.repeats, 10)) * 1000
    print(f"sampler            F={args.sampler_faces:,} faces, K={k}: {ms:.2f} ms per draw")


if __name__ == "__main__":
  main()
