"""A tiny SynthTalk corpus and model for tests and smoke runs (seconds on a CPU)."""

import ml_collections

from configs import default
from mmtalker_jax.data.synthetic import SynthSpec


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  spec = SynthSpec(num_train_subjects=2, num_unseen_subjects=1, num_sentences=6,
                   min_seconds=1.0, max_seconds=2.0, vertex_spacing=0.06)
  config.data = default.synthtalk_data(spec, root="data/synthtalk_tiny")
  config.data.bucket_frames = (32, 64)
  return config
