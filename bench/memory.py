"""XLA's per-device memory for a config's train and eval steps, compiled for N simulated devices.

  python bench/memory.py --config configs/biwi.py [--devices 8] [--json OUT]
  python bench/memory.py --config configs/vocaset.py
  python bench/memory.py --config configs/sweep_density.py --devices 1 --buckets

Nothing runs: the train step (sampled points) and the step with the
all-vertex loss (every `loss.vertex_every` steps) are compiled for the
config's global batch at its longest length bucket, on a stand-in face mesh
of the config's data.num_vertices (or `--vertices`) vertices (about 2 faces per vertex, as FLAME and BIWI have),
and so are evaluation's three decoder programs (eval.batch_size x the longest
bucket, every vertex), and XLA's memory analysis is printed per device: arguments, outputs,
temporaries, and their sum (an upper bound on the peak; donated arguments are
counted once). Also XLA's FLOPs per step, and the step time they imply at a
given accelerator peak (a scan's body counts once in XLA's cost analysis: for
the FLOPs of the chunked all-vertex loss, pass --vertex-chunk-frames 0 to
measure the one-shot program). For a sweep, the train steps are its first
program's (`sweep.group_size` replicas, vmapped). `--buckets` adds the sampled
step at every shorter length bucket: on a CPU, where each bucket's
temporaries are one block of its own size, they bound what a run's heap
holds (`train.host_memory_gib`, docs/training.md).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", required=True)
  parser.add_argument("--vertices", type=int, default=None,
                      help="mesh size (default: the config's data.num_vertices, else 5023)")
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--peak-tflops", type=float, default=197.0,
                      help="accelerator peak for the time estimate (TPU v5e bf16: 197)")
  parser.add_argument("--vertex-chunk-frames", type=int, default=None,
                      help="override loss.vertex_chunk_frames (0: the one-shot all-vertex loss)")
  parser.add_argument("--point-chunk-frames", type=int, default=None,
                      help="override loss.point_chunk_frames (0: the sampled points' frames at once)")
  parser.add_argument("--buckets", action="store_true",
                      help="size the sampled train step at every length bucket, not only the longest")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}"

  import jax
  import numpy as np

  from bench.model import disk_face
  from mmtalker_jax.configlib import load_config
  from mmtalker_jax.mesh.assets import build_mesh_assets
  from mmtalker_jax.models.registry import build_model
  from mmtalker_jax.training import population, sharding, trainer
  from mmtalker_jax.training.optimizer import make_optimizer
  from mmtalker_jax.training.state import create_state
  from mmtalker_jax import alignment
  from mmtalker_jax.data import audio as audio_lib
  from mmtalker_jax.models.speech import setup as speech_setup
  from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig

  config = load_config(args.config)
  if config.model.get("audio_encoder", "logmel") == "pretrained":
    # Shapes only: the base-sized architecture (wav2vec 2.0 base = HuBERT base).
    speech_setup.apply_architecture(config, SpeechConfig())
  if args.vertex_chunk_frames is not None:
    config.loss.vertex_chunk_frames = args.vertex_chunk_frames
  if args.point_chunk_frames is not None:
    config.loss.point_chunk_frames = args.point_chunk_frames
  vertices = args.vertices or config.data.get("num_vertices") or 5023
  assets = build_mesh_assets(*disk_face(vertices))
  mesh = sharding.make_mesh()
  model = build_model(config, assets, num_styles=8)
  optimizer = make_optimizer(config.train, speech_setup.frozen_parameters(config.model))
  # A sweep's first program (sweep.group_size replicas); a plain config's one run.
  runs = population.groups(config, population.replicas_of(config, "/unused"))[0]
  state = jax.eval_shape(lambda k: create_state(model, optimizer, config.data, k, mesh),
                         jax.random.key(0))
  params = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding.replicated(mesh)),
      state.params)
  state = jax.tree_util.tree_map(  # the program's replicas on a leading axis
      lambda a: jax.ShapeDtypeStruct((len(runs), *a.shape), a.dtype,
                                     sharding=sharding.member_sharded(mesh)), state)
  b, t = int(config.train.global_batch_size), max(config.data.bucket_frames)
  v = assets.num_vertices
  data = sharding.batch_sharded(mesh)

  def batch_of(frames: int) -> dict:
    f = alignment.num_feature_frames(frames, config.data.fps, config.data.features.feature_rate)
    shapes = {"audio": ((b, f, audio_lib.num_channels(dict(config.data.features))), np.float32),
              "vertices": ((b, frames, v, 3), np.float32), "template": ((b, v, 3), np.float32),
              "frame_mask": ((b, frames), np.float32), "style": ((b,), np.int32),
              "seq_index": ((b,), np.int32), **key_shapes(model, b, frames, v)}
    return {k: jax.ShapeDtypeStruct(s, d, sharding=data) for k, (s, d) in shapes.items()}

  key = jax.eval_shape(lambda: population.stack([population.sample_key(r.config) for r in runs],
                                                mesh))
  key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=sharding.member_sharded(mesh))
  print(f"config {args.config}: global batch {b} x {t} frames, V={v}, faces "
        f"{assets.num_faces}, K={config.sampler.num_points}, width {config.model.width}, "
        f"{jax.device_count()} devices, {len(runs)} replica(s) per program")
  out = {}
  for name, vertex in (("train_sampled", False), ("train_vertex_loss", True)):
    step = trainer.make_train_step(model, optimizer, config, mesh, runs, with_vertex_loss=vertex)
    compiled = step.jitted.lower(state, batch_of(t), key, *step.extra).compile()
    out[f"{name}_bytes_per_device"], out[f"{name}_flops_per_device"] = report(
        name, compiled, args.peak_tflops)
  if args.buckets:
    step = trainer.make_train_step(model, optimizer, config, mesh, runs)
    for frames in sorted(config.data.bucket_frames)[:-1]:
      compiled = step.jitted.lower(state, batch_of(frames), key, *step.extra).compile()
      out[f"train_sampled_{frames}_bytes_per_device"], _ = report(
          f"train_sampled@{frames}", compiled, args.peak_tflops)
  out["train_bytes_per_device"] = max(out["train_sampled_bytes_per_device"],
                                      out["train_vertex_loss_bytes_per_device"])
  out["eval_bytes_per_device"] = eval_memory(model, config, mesh, params, assets, args)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as fh:
      json.dump(out, fh, indent=2)


def report(name: str, compiled, peak_tflops: float) -> tuple[int, float]:
  """Prints a compiled program's per-device memory and FLOPs; returns (bytes, flops)."""
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
           - mem.alias_size_in_bytes)
  flops = float(cost.get("flops", 0.0))  # per device
  print(f"{name:<18} per device: args {mem.argument_size_in_bytes / 2**30:.2f} GiB, "
        f"outputs {mem.output_size_in_bytes / 2**30:.2f} GiB, temporaries "
        f"{mem.temp_size_in_bytes / 2**30:.2f} GiB, aliased {mem.alias_size_in_bytes / 2**30:.2f}"
        f" GiB -> {total / 2**30:.2f} GiB; {flops / 1e9:.1f} GFLOP "
        f"({flops / (peak_tflops * 1e12) * 1e3:.2f} ms at {peak_tflops:g} TFLOP/s)")
  return int(total), flops


def eval_memory(model, config, mesh, params, assets, args) -> int:
  """The evaluation decoder's three programs at eval.batch_size x the longest bucket.

  Evaluation (and predict.py) runs `ChunkedDecoder`: encode the batch, compute
  the per-point features of every vertex, then the regressor over chunks of
  frames sized from decode.chunk_mib. The figure returned is the largest program, the
  chunk program counted with the encoder outputs it does not take but that
  stay resident while it runs.
  """
  import jax
  import numpy as np

  from mmtalker_jax import alignment
  from mmtalker_jax.data import audio as audio_lib
  from mmtalker_jax.models.registry import INPUTS
  from mmtalker_jax.training import sharding
  from mmtalker_jax.inference.decoder import decode_budget
  from mmtalker_jax.training.evaluation import make_decoder

  b, t = int(config.eval.batch_size), max(config.data.bucket_frames)
  f = alignment.num_feature_frames(t, config.data.fps, config.data.features.feature_rate)
  v = assets.num_vertices
  data = sharding.batch_sharded(mesh)
  rep = sharding.replicated(mesh)
  shapes = {"audio": ((b, f, audio_lib.num_channels(dict(config.data.features))), np.float32),
            "template": ((b, v, 3), np.float32), "frame_mask": ((b, t), np.float32),
            "style": ((b,), np.int32), **key_shapes(model, b, t, v)}
  inputs = {k: jax.ShapeDtypeStruct(s, d, sharding=data) for k, (s, d) in shapes.items()}
  decoder = make_decoder(model, decode_budget(config))
  chunk = decoder.chunk_frames(b, v)
  face_ids, bary = (jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=rep)
                    for a in assets.vertex_points())

  def abstract(compiled):
    return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  compiled.out_info, compiled.output_shardings)

  keys = {k: inputs[k] for k in model.key_inputs}
  encode = decoder._encode.lower(params, keys, *(inputs[k] for k in INPUTS)).compile()
  encoded = abstract(encode)
  points = decoder._points.lower(params, encoded, face_ids, bary).compile()
  at_points = abstract(points)
  start = jax.ShapeDtypeStruct((), np.int32)
  frames = decoder._frames.lower(params, at_points, encoded["motion"], inputs["frame_mask"],
                                 start, chunk=chunk).compile()
  print(f"eval: batch {b} x {t} frames, all {v} vertices, chunks of {chunk} frames "
        f"({decode_budget(config):g} MiB budget)")
  sizes = {name: report(f"eval_{name}", c, args.peak_tflops)[0]
           for name, c in (("encode", encode), ("points", points), ("frames", frames))}
  def per_device(tree):
    return sum(int(np.prod(a.shape)) * a.dtype.itemsize // (
        1 if a.sharding.is_fully_replicated else jax.device_count())
        for a in jax.tree_util.tree_leaves(tree))

  # While the chunks run, the encoder's other outputs stay resident too.
  kept = per_device(encoded) - per_device(encoded["motion"])
  peak = max(sizes["encode"], sizes["points"], sizes["frames"] + kept)
  print(f"eval peak per device (largest program + the encoded batch it keeps): "
        f"{peak / 2**30:.2f} GiB")
  return int(peak)


def key_shapes(model, b: int, t: int, v: int) -> dict:
  """The key-motion inputs `model` reads (models/key_motion.py): {name: (shape, dtype)}."""
  import numpy as np

  shapes = {"key_visemes": ((b, t), np.int32), "key_motion": ((b, t, v, 3), np.float32)}
  return {k: shapes[k] for k in model.key_inputs}


if __name__ == "__main__":
  main()
