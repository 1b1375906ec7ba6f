"""Pretrained speech encoders (wav2vec 2.0, HuBERT) from local Hugging Face folders.

  encoder = load_speech_encoder("checkpoints/wav2vec2-base-960h")
  states = encoder.hidden_states(normalize_waveform(wave)[None])  # num_layers + 1 x [1, T', H]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mmtalker_jax.models.speech.loading import read_folder, speech_config
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig, SpeechEncoder
from mmtalker_jax.waveform import normalize_waveform

__all__ = ["LoadedEncoder", "SpeechConfig", "SpeechEncoder", "load_speech_encoder",
           "normalize_waveform", "speech_config"]


@dataclasses.dataclass
class LoadedEncoder:
  """A checkpoint's encoder and its weights."""
  config: SpeechConfig
  module: SpeechEncoder
  params: dict

  def __post_init__(self):
    self._apply = jax.jit(lambda p, w: self.module.apply({"params": p}, w))

  def hidden_states(self, wave) -> tuple[jax.Array, ...]:
    """[B, S] normalised 16 kHz float32 -> num_layers + 1 arrays [B, T', H], as
    transformers' output_hidden_states=True gives them."""
    return self._apply(self.params, jnp.asarray(wave, jnp.float32))[0]

  def last_hidden_state(self, wave) -> jax.Array:
    """[B, S] -> [B, T', H], the model's output (transformers' last_hidden_state)."""
    return self._apply(self.params, jnp.asarray(wave, jnp.float32))[1]


def load_speech_encoder(folder: str) -> LoadedEncoder:
  """The encoder of a local folder holding config.json + model.safetensors.

  Raises:
    InputError: naming the folder or file, for anything missing or mismatched.
  """
  config, params = read_folder(folder)
  return LoadedEncoder(config, SpeechEncoder(config), params)
