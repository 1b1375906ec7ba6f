"""Long-form material: sentences joined into minutes, aligned exactly."""

import numpy as np

from mmtalker_jax.data import long_form
from mmtalker_jax.data.audio import load_audio
from mmtalker_jax.data.corpus import Corpus


def test_plan_uses_every_sentence_and_reaches_the_length():
  fps = 30.0
  lengths = [90, 120, 60]  # 3, 4 and 2 s
  groups = long_form.plan(lengths, fps, seconds=20)  # more than the 9 s there are: cycle
  assert len(groups) == 1 and sorted(set(groups[0])) == [0, 1, 2]
  assert sum(lengths[i] for i in groups[0]) >= 20 * fps
  assert sum(lengths[i] for i in groups[0][:-1]) < 20 * fps  # stops at the first crossing
  groups = long_form.plan(lengths * 4, fps, seconds=10)  # 36 s: several sequences
  assert len(groups) >= 3 and sorted({i for g in groups for i in g}) == list(range(12))
  assert all(sum(lengths[i % 3] for i in g) >= 10 * fps for g in groups)


def test_join_keeps_audio_and_meshes_aligned(data_cfg):
  corpus = Corpus(data_cfg)
  sr = int(data_cfg.features.sample_rate)
  longs = list(long_form.join(corpus, "train", seconds=12))
  subjects = sorted({s.subject for s in corpus.split("train")})
  assert sorted({l.subject for l in longs}) == subjects
  for long in longs:
    assert len(long.vertices) >= 12 * corpus.fps
    assert len(long.audio) == round(len(long.vertices) * sr / corpus.fps)
    for part in long.parts:
      f0, f1 = part.frames
      np.testing.assert_array_equal(long.vertices[f0:f1], corpus.vertices(part.sequence))
      # The sentence's audio starts where its first frame does.
      assert part.samples[0] == round(f0 * sr / corpus.fps)
      wav = load_audio(part.sequence.wav, sr)
      n = min(len(wav), part.samples[1] - part.samples[0])
      np.testing.assert_array_equal(long.part_audio(part)[:n], wav[:n])
  assert longs[0].sentence == "long01"
