"""Prediction and rendering speed at V = 5023 on this machine.

  python bench/predict.py [--ckpt WORKDIR] [--seconds 10 300] [--render-frames 90]

Without --ckpt, a freshly initialised default-config model on a 5023-vertex
disk mesh stands in (speed does not depend on the weights). Prints, per audio
length: the real-time factor (seconds of audio per second of compute, after
compile) and the process's peak memory; then 512x512 render frames/s.
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stand_in_run(num_vertices: int):
  import jax
  from bench.model import disk_face
  from configs import default
  from mmtalker_jax.mesh.assets import build_mesh_assets
  from mmtalker_jax.models.registry import build_model
  from mmtalker_jax.training import sharding
  from mmtalker_jax.training.restore import Restored
  from mmtalker_jax.training.state import example_inputs

  config = default.get_config()
  assets = build_mesh_assets(*disk_face(num_vertices))
  model = build_model(config, assets, num_styles=8)
  x = example_inputs(model, config.data, 1, 32)
  params = jax.jit(model.init)({"params": jax.random.key(0)}, *x.values())["params"]
  return Restored(config, "", 0, [f"S{i}" for i in range(8)], model, params,
                  sharding.make_mesh(), None)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--ckpt", default=None)
  parser.add_argument("--vertices", type=int, default=5023)
  parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 300.0])
  parser.add_argument("--render-frames", type=int, default=90)
  args = parser.parse_args()

  import jax
  import numpy as np

  from mmtalker_jax.inference.predictor import Predictor
  from mmtalker_jax.training.restore import restore
  from mmtalker_jax.viz import video

  run = restore(args.ckpt) if args.ckpt else stand_in_run(args.vertices)
  predictor = Predictor(run)
  sr = int(predictor.features["sample_rate"])
  rng = np.random.default_rng(0)
  print(f"backend {jax.default_backend()}, V={run.model.assets.num_vertices}, "
        f"F={run.model.assets.num_faces}, chunk {predictor.decoder.chunk} frames, "
        f"length bucket {predictor.bucket} frames")
  frames = None
  for seconds in args.seconds:
    audio = (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
    start = time.perf_counter()
    predictor.animate(audio)  # compiles this length bucket
    first = time.perf_counter() - start
    start = time.perf_counter()
    frames = predictor.animate(audio)
    warm = time.perf_counter() - start
    print(f"{seconds:6.0f} s audio: {len(frames)} frames, first call {first:.2f} s, "
          f"warm {warm:.2f} s = real-time factor {seconds / warm:.1f}, "
          f"peak RSS so far {peak_rss_mib():.0f} MiB")

  if args.render_frames <= 0:
    return
  clip = frames[:args.render_frames]
  faces = run.model.assets.faces
  list(video.render_animation(clip[:2], faces, 512))  # numba compile
  start = time.perf_counter()
  count = sum(1 for _ in video.render_animation(clip, faces, 512))
  elapsed = time.perf_counter() - start
  print(f"render 512x512: {count / elapsed:.1f} frames/s over {count} frames")


if __name__ == "__main__":
  main()
