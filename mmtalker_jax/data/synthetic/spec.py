"""The size and rates of a SynthTalk corpus (what configs name; no generator imports)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SynthSpec:
  """Size and rates of a SynthTalk corpus."""
  seed: int = 0
  num_train_subjects: int = 8
  num_unseen_subjects: int = 2
  num_sentences: int = 40
  min_seconds: float = 2.0
  max_seconds: float = 6.0
  fps: float = 30.0
  sample_rate: int = 16000
  vertex_spacing: float = 0.02

  @property
  def train_subjects(self) -> list[str]:
    return [f"SynthTalk_S{i + 1:02d}" for i in range(self.num_train_subjects)]

  @property
  def unseen_subjects(self) -> list[str]:
    n = self.num_train_subjects
    return [f"SynthTalk_S{n + i + 1:02d}" for i in range(self.num_unseen_subjects)]

  def splits(self) -> dict[str, dict]:
    """{split: {'subjects': [...], 'sentences': (first, last)}}, 1-based inclusive.

    train/val/test: the training subjects on 80/10/10% of the sentences;
    test_b: unseen subjects on the last 20%.
    """
    n = self.num_sentences
    n_hold = max(1, int(round(0.1 * n)))
    n_train = n - 2 * n_hold
    if n_train < 1:
      raise ValueError(f"{n} sentences are too few for train/val/test splits")
    n_b = max(1, int(round(0.2 * n)))
    return {
        "train": {"subjects": self.train_subjects, "sentences": (1, n_train)},
        "val": {"subjects": self.train_subjects, "sentences": (n_train + 1, n_train + n_hold)},
        "test": {"subjects": self.train_subjects, "sentences": (n - n_hold + 1, n)},
        "test_b": {"subjects": self.unseen_subjects, "sentences": (n - n_b + 1, n)},
    }
