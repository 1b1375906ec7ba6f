"""Phone alignment on SynthTalk against the generator's own timeline.

  python bench/align.py [--corpus data/synthtalk] [--config configs/default.py] [--sequences 60]

For each take (every k-th of the corpus, `--sequences` in all), pocketsphinx's
phones (keymotion/phones.py) against what the generator says and when:
- boundaries: the fraction of the generator's phone boundaries with a
  recognized boundary within 30 ms (and 20, 50 ms);
- key frames: the fraction of the generator's key frames (keymotion/visemes.py)
  with a recognized key frame within one frame, of the same viseme and of any;
- how many key frames the recognizer adds that the generator has not;
- seconds of compute per second of audio.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus", default="data/synthtalk")
  parser.add_argument("--config", default="configs/default.py")
  parser.add_argument("--sequences", type=int, default=60)
  args = parser.parse_args()

  import numpy as np

  from mmtalker_jax.configlib import load_config
  from mmtalker_jax.data.audio import load_audio
  from mmtalker_jax.data.synthetic import corpus as synth
  from mmtalker_jax.keymotion import phones, visemes

  config = load_config(args.config)
  spec = synth.spec_from_config(config.data)
  fps = float(config.data.fps)
  stems = sorted(f[:-4] for f in os.listdir(os.path.join(args.corpus, "wav")))
  stems = stems[::max(1, len(stems) // args.sequences)][:args.sequences]
  recognize = phones.Recognizer()
  tolerances = (0.02, 0.03, 0.05)
  hits = {t: 0 for t in tolerances}
  boundaries = keys = same = anywhere = extra = recognized_keys = 0
  audio_s = compute_s = 0.0
  per_viseme: dict[str, list[int]] = {}
  for stem in stems:
    truth = phones.from_synthtalk(spec, stem)
    wave = load_audio(os.path.join(args.corpus, "wav", stem + ".wav"), 16000)
    start = time.perf_counter()
    found = recognize(wave)
    compute_s += time.perf_counter() - start
    audio_s += len(wave) / 16000
    true_b = np.array([s for _, s, _ in truth[1:]])
    found_b = np.array([s for _, s, _ in found[1:]] or [-1.0])
    gap = np.abs(true_b[:, None] - found_b[None]).min(1)
    boundaries += len(true_b)
    for t in tolerances:
      hits[t] += int(np.sum(gap <= t + 1e-9))
    true_k = visemes.key_frames(truth, fps)
    found_k = visemes.key_frames(found, fps)
    recognized_keys += len(found_k)
    keys += len(true_k)
    for frame, v in true_k:
      near = [fv for ff, fv in found_k if abs(ff - frame) <= 1]
      anywhere += bool(near)
      same += v in near
      per_viseme.setdefault(v, [0, 0])[0] += v in near
      per_viseme[v][1] += 1
    extra += sum(not any(abs(ff - f) <= 1 for f, _ in true_k) for ff, _ in found_k)
  print(f"{len(stems)} SynthTalk takes of {args.corpus}, {audio_s:.0f} s of speech, "
        f"{boundaries} phone boundaries, {keys} key frames at {fps:g} fps")
  for t in tolerances:
    print(f"boundaries within {t * 1000:.0f} ms   {hits[t] / boundaries:6.1%}")
  print(f"key frames within 1 frame, same viseme {same / keys:6.1%}")
  print(f"key frames within 1 frame, any viseme  {anywhere / keys:6.1%}")
  print("  same viseme, by viseme: " + ", ".join(
      f"{v} {h / n:.0%} of {n}" for v, (h, n) in sorted(per_viseme.items())))
  print(f"recognized key frames {recognized_keys}, of which {extra} "
        f"({extra / max(recognized_keys, 1):.1%}) have no true key frame within 1 frame")
  print(f"pocketsphinx: {compute_s / audio_s * 1000:.0f} ms of compute per second of audio")


if __name__ == "__main__":
  main()
