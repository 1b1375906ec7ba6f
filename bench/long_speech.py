"""Does the mouth still follow the voice after minutes of speech?

  python bench/long_speech.py --ckpt runs/synthtalk --audio speech.wav [--style NAME]
                              [--minute 60] [--alone 20]

Predicts the whole file in one piece, then prints, per stretch of `--minute`
seconds, the correlation between lip motion (the mean distance of the lip
vertices from the neutral face) and the voice's loudness (RMS level in dB over
each mesh frame's audio). A model that keeps following the voice holds the
same correlation in the last stretch as in the first. It also predicts the
first `--alone` seconds on their own and prints how far that differs from
the same frames inside the long prediction, by distance from the cut: near
it the two hear different audio after it; farther back a model whose every
stage is local gives the same frames.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)


def loudness_db(audio, num_frames: int, sample_rate: int, fps: float):
  """[T] RMS level (dB) of the audio each mesh frame covers."""
  import numpy as np

  edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(int)
  padded = np.concatenate([audio, np.zeros(max(0, edges[-1] - len(audio)), audio.dtype)])
  power = np.array([np.mean(padded[a:b] ** 2) if b > a else 0.0
                    for a, b in zip(edges[:-1], edges[1:])])
  return 10 * np.log10(power + 1e-10)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ckpt", required=True)
  parser.add_argument("--audio", required=True)
  parser.add_argument("--style", default=None)
  parser.add_argument("--minute", type=float, default=60.0, help="stretch length (s)")
  parser.add_argument("--alone", type=float, default=20.0, help="seconds predicted alone")
  args = parser.parse_args()

  import numpy as np

  from mmtalker_jax.data.audio import load_audio
  from mmtalker_jax.inference.predictor import Predictor
  from mmtalker_jax.training.restore import restore

  run = restore(args.ckpt)
  predictor = Predictor(run)
  sr = int(predictor.features["sample_rate"])
  fps = predictor.fps
  audio = load_audio(args.audio, sr)
  template = predictor.template(args.style)
  lips = run.model.assets.regions["lips"]

  start = time.perf_counter()
  frames = predictor.animate(audio, args.style)
  elapsed = time.perf_counter() - start
  motion = np.linalg.norm(frames[:, lips] - template[lips], axis=-1).mean(axis=1)  # [T]
  level = loudness_db(audio, len(frames), sr, fps)
  print(f"{args.audio}: {len(audio) / sr:.1f} s, {len(frames)} frames, predicted in "
        f"{elapsed:.1f} s (with compilation)")
  print(f"{'stretch':>16} {'corr(lips, loudness)':>22} {'lip motion mean (mm)':>22}")
  step = int(round(args.minute * fps))
  for a in range(0, len(frames), step):
    b = min(a + step, len(frames))
    if b - a < fps * 5:  # too short to correlate
      continue
    r = np.corrcoef(motion[a:b], level[a:b])[0, 1]
    print(f"{a / fps:7.0f}-{b / fps:5.0f} s {r:22.3f} {motion[a:b].mean() * 1000:22.2f}")
  r_all = np.corrcoef(motion, level)[0, 1]
  print(f"{'whole file':>16} {r_all:22.3f} {motion.mean() * 1000:22.2f}")

  n = min(len(audio), int(args.alone * sr))
  alone = predictor.animate(audio[:n], args.style)
  t = len(alone)
  inside = frames[:t]
  diff = np.linalg.norm(alone[:, lips] - inside[:, lips], axis=-1).max(axis=1)  # [t]
  span = np.linalg.norm(inside[:, lips] - template[lips], axis=-1).max()
  print(f"first {n / sr:.0f} s predicted alone vs inside the file (lips move up to "
        f"{span * 1000:.2f} mm):")
  for s in (0, 2, 5, 10):
    k = t - int(round(s * fps))
    if k > 0:
      print(f"  frames more than {s:2d} s before the cut: lips differ by at most "
            f"{diff[:k].max() * 1000:.4f} mm")


if __name__ == "__main__":
  main()
