"""Long-form material: a subject's sentences joined into minutes of speech.

Used by `evaluate.py --long SECONDS` to measure whether the model is as good
on minutes of speech as on single sentences. Each long sequence joins one
subject's sentences of a split, in order (cycling through them again when
the subject has fewer seconds than asked), until it reaches SECONDS; a new
sequence starts there, until every sentence has been used once. Audio and
meshes stay aligned exactly: sentence i, of T_i mesh frames, occupies
frames [c_i, c_i + T_i) and samples [round(c_i sr / fps), round(c_(i+1) sr / fps))
of the joined recording, its own audio cropped or padded with silence to
fit, so frame t still covers audio [t/fps, (t+1)/fps).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

import numpy as np

from mmtalker_jax.data.audio import load_audio
from mmtalker_jax.data.corpus import Corpus, Sequence


@dataclasses.dataclass
class Part:
  """One sentence inside a long sequence: its frames and samples there."""
  sequence: Sequence
  frames: tuple[int, int]
  samples: tuple[int, int]


@dataclasses.dataclass
class LongSequence:
  """A subject's joined sentences.

  sentence: 'long<k>' (k from 01); audio: [S] float32; vertices: [T,V,3] float32.
  """
  subject: str
  sentence: str
  parts: list[Part]
  audio: np.ndarray
  vertices: np.ndarray

  def part_audio(self, part: Part) -> np.ndarray:
    """The samples of one sentence exactly as they sit in the joined audio."""
    return self.audio[part.samples[0]:part.samples[1]]


def plan(lengths: list[int], fps: float, seconds: float) -> list[list[int]]:
  """Which sentences (indices into `lengths`, mesh frames each) make each long sequence.

  Every sentence is used at least once; every sequence lasts at least
  `seconds` (whole sentences, cycling when needed).
  """
  if not lengths:
    return []
  target = seconds * fps
  groups, current, frames, used = [], [], 0, set()
  for i in itertools.cycle(range(len(lengths))):
    current.append(i)
    frames += lengths[i]
    used.add(i)
    if frames >= target:
      groups.append(current)
      current, frames = [], 0
      if len(used) == len(lengths):
        return groups


def join(corpus: Corpus, split: str, seconds: float) -> Iterator[LongSequence]:
  """The long sequences of every subject of `split`, one at a time (each in memory)."""
  fps = corpus.fps
  sr = int(corpus.cfg.features.sample_rate)
  by_subject: dict[str, list[Sequence]] = {}
  for seq in corpus.split(split):
    by_subject.setdefault(seq.subject, []).append(seq)
  for subject in sorted(by_subject):
    seqs = by_subject[subject]
    lengths = [corpus.num_frames(s) for s in seqs]
    waves = [load_audio(s.wav, sr) for s in seqs]
    meshes = [corpus.vertices(s) for s in seqs]
    for k, group in enumerate(plan(lengths, fps, seconds)):
      total = sum(lengths[i] for i in group)
      audio = np.zeros(int(round(total * sr / fps)), np.float32)
      vertices = np.empty((total, corpus.assets.num_vertices, 3), np.float32)
      parts, c = [], 0
      for i in group:
        s0, s1 = int(round(c * sr / fps)), int(round((c + lengths[i]) * sr / fps))
        wav = waves[i][:s1 - s0]
        audio[s0:s0 + len(wav)] = wav
        vertices[c:c + lengths[i]] = meshes[i]
        parts.append(Part(seqs[i], (c, c + lengths[i]), (s0, s1)))
        c += lengths[i]
      yield LongSequence(subject, f"long{k + 1:02d}", parts, audio, vertices)
