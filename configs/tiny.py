"""A tiny SynthTalk corpus and model for tests and smoke runs (seconds on a CPU)."""

import ml_collections

from configs import default
from mmtalker_jax.data.synthetic import SynthSpec


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  spec = SynthSpec(num_train_subjects=2, num_unseen_subjects=1, num_sentences=6,
                   min_seconds=1.0, max_seconds=2.0, vertex_spacing=0.06)
  config.data = default.synthtalk_data(spec, root="data/synthtalk_tiny")
  # One length bucket (every tiny sentence fits in 64 frames): one compile per program.
  config.data.bucket_frames = (64,)
  config.model.update(dict(width=32, audio_levels=2, gcn_blocks=2, geometry_tokens=8,
                           num_heads=2, attention_window=64, attention_block=32, token_window=64,
                           regressor_hidden=32, regressor_heads=2, uv_frequencies=4))
  config.sampler.num_points = 64
  config.train.update(dict(global_batch_size=4, num_steps=40, warmup_steps=5,
                           learning_rate=3e-3, log_every=10, eval_every=20))
  config.eval.batch_size = 4
  return config
