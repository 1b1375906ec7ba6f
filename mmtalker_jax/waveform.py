"""The speech checkpoints' input convention: per-utterance normalisation.

wav2vec 2.0 / HuBERT feature extractors with do_normalize=True give the
encoder (x - mean) / sqrt(var + 1e-7) over the whole utterance. The data
pipeline (data/audio.py) and the encoders' public helper
(models.speech.normalize_waveform) both use it, so it lives here, below both.
"""

from __future__ import annotations

import numpy as np


def normalize_waveform(wave: np.ndarray) -> np.ndarray:
  """Zero mean, unit variance over the utterance: [S] -> [S] float32."""
  wave = np.asarray(wave, np.float32)
  return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)
