"""FaceFormer's autoregressive prediction here against the official `predict`.

  python bench/faceformer.py [--seconds 10 20 300]
      [--official /path/to/FaceFormer --torch-python /path/to/python-with-torch]

Both sides are the published VOCASET model's size (wav2vec2-base, width 64,
5023 vertices) with random weights (speed does not depend on them). Ours is
`from_pytorch(...)`'s predictor (models/faceformer_weights.py: the official
recipe, a key/value-cache scan); each length is timed on its first call
(compiling included) and on a second call. The official `predict` re-decodes
the whole prefix at every frame and stops at 600 frames (its bias table), so
it is timed only up to 20 s; it runs in `--torch-python`'s interpreter
(torch and transformers installed) from the `--official` checkout. Prints
seconds and real-time factors (seconds of audio per second of compute).
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as predict.py runs (mmtalker_jax/allocator.py)

VERTICES, WIDTH, SUBJECTS = 5023, 64, 8

# Runs in the torch interpreter: the official model around a random
# wav2vec2-base (no download), timed on each length; prints JSON.
OFFICIAL = r"""
import json, sys, time
import numpy as np, torch, transformers
from transformers.models.wav2vec2 import modeling_wav2vec2
sys.path.insert(0, sys.argv[1])
import faceformer as official
projection = modeling_wav2vec2.Wav2Vec2FeatureProjection.forward
modeling_wav2vec2.Wav2Vec2FeatureProjection.forward = lambda self, x: projection(self, x)[0]
config = transformers.Wav2Vec2Config(attn_implementation="eager")
official.Wav2Vec2Model.from_pretrained = classmethod(lambda cls, name: cls(config))
import argparse
torch.set_num_threads(int(sys.argv[3]))
args = argparse.Namespace(dataset="vocaset", feature_dim=64, vertice_dim=5023 * 3, period=30,
                          device="cpu", train_subjects=" ".join(f"S{i}" for i in range(8)))
model = official.Faceformer(args).eval()
out = {}
for seconds in json.loads(sys.argv[2]):
  wave = torch.randn(1, int(seconds * 16000))
  template = torch.zeros(1, 5023 * 3)
  with torch.no_grad():
    start = time.perf_counter()
    frames = model.predict(wave, template, torch.eye(8)[:1]).shape[1]
    total = time.perf_counter() - start
    start = time.perf_counter()
    model.audio_encoder(wave, "vocaset").last_hidden_state
    encoder = time.perf_counter() - start
  out[seconds] = (total, encoder, frames)
print(json.dumps(out))
"""


def ours(lengths: list[float]) -> dict[float, tuple[float, float, float, int]]:
  """{seconds: (first call s, second call s, its wav2vec 2.0 alone s, frames)} of
  our predictor."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from mmtalker_jax.models.faceformer import FaceFormer
  from mmtalker_jax.models.faceformer_weights import WAV2VEC2_BASE, PublishedFaceFormer

  model = FaceFormer(assets=None, num_styles=SUBJECTS, fps=30.0, feature_rate=16000.0,
                     displacement_scale=1.0, width=WIDTH, num_heads=4, period=30, dropout=0.0,
                     teacher_forcing=False, audio_encoder="pretrained",
                     audio_alignment="interpolate", speech=WAV2VEC2_BASE,
                     num_vertices=VERTICES)
  params = jax.jit(lambda key: model.init(
      {"params": key}, jnp.zeros((1, 16000, 1)), None, jnp.zeros((1,), jnp.int32),
      jnp.ones((1, 30)), method="encode"))(jax.random.key(0))["params"]
  predictor = PublishedFaceFormer(model, params, "vocaset")

  def audio_only(module, wave, frame_mask):
    return module.audio(wave, frame_mask)[0]
  encoder = jax.jit(lambda p, w, m: model.apply({"params": p}, w, m, method=audio_only))
  template = np.zeros((VERTICES, 3), np.float32)
  rng = np.random.default_rng(0)
  out = {}
  for seconds in lengths:
    wave = rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    times = []
    for _ in range(2):
      start = time.perf_counter()
      frames = len(predictor.predict(wave, template, 0))
      times.append(time.perf_counter() - start)
    audio = jnp.asarray(wave)[None, :, None]
    mask = jnp.ones((1, frames))
    jax.block_until_ready(encoder(params, audio, mask))
    start = time.perf_counter()
    jax.block_until_ready(encoder(params, audio, mask))
    out[seconds] = (times[0], times[1], time.perf_counter() - start, frames)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 20.0, 300.0])
  parser.add_argument("--official", default=None, help="a checkout of EvelynFan/FaceFormer")
  parser.add_argument("--torch-python", default=None, help="a python with torch, transformers")
  parser.add_argument("--official-max-seconds", type=float, default=20.0)
  args = parser.parse_args()

  official = {}
  if args.official and args.torch_python:
    lengths = [s for s in args.seconds if s <= args.official_max_seconds]
    proc = subprocess.run([args.torch_python, "-c", OFFICIAL, os.path.abspath(args.official),
                           json.dumps(lengths), str(os.cpu_count())],
                          capture_output=True, text=True, check=True)
    official = {float(k): v for k, v in json.loads(proc.stdout.splitlines()[-1]).items()}
  mine = ours(args.seconds)
  print(f"FaceFormer prediction, VOCASET size (wav2vec2-base, width {WIDTH}, {VERTICES} "
        f"vertices), {os.cpu_count()} CPU cores")
  print("seconds per call; wav2vec = its wav2vec 2.0 alone, decoder = the rest; "
        "ours after compiling (first call in brackets)")
  print(f"{'audio':>6} {'frames':>6} | {'ours':>14} {'wav2vec':>8} {'decoder':>8} | "
        f"{'official':>9} {'wav2vec':>8} {'decoder':>8} | {'faster':>7} {'decoder':>8}")
  for seconds in args.seconds:
    first, second, encoder, frames = mine[seconds]
    row = (f"{seconds:>5.0f}s {frames:>6d} | {second:>5.2f} ({first:>5.1f}) {encoder:>8.2f} "
           f"{second - encoder:>8.3f} |")
    if seconds in official:
      theirs, their_encoder, their_frames = official[seconds]
      assert their_frames == frames, (their_frames, frames)
      row += (f" {theirs:>9.2f} {their_encoder:>8.2f} {theirs - their_encoder:>8.2f} |"
              f" {theirs / second:>6.1f}x {(theirs - their_encoder) / (second - encoder):>7.0f}x")
    print(row + f"   ours {seconds / second:.1f}x real time")


if __name__ == "__main__":
  main()
