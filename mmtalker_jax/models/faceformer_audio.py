"""FaceFormer's audio side: speech -> the states each mesh frame may attend to.

Two front ends give [B, T, P, H] states (P per mesh frame) and their [B, T, P] mask:
  'pretrained'  wav2vec 2.0 on the waveform, as the published models take it:
                the transformer runs on the convolutional features resampled to
                the mesh rate before the projection, either by linear
                interpolation to one state per frame ('interpolate', VOCASET's
                30 fps) or as the first 2T encoder frames, two per frame
                ('pairs', BIWI's 25 fps against 50 Hz). Each row is resampled
                from its own real length, so batch padding does not move its
                real frames.
  'logmel'      the conv stack of audio_encoder.py on log-mel frames, its last
                level pooled to one state per frame (a CPU-sized stand-in).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmtalker_jax.models.audio_encoder import AudioEncoder, feature_mask
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig, SpeechEncoder

ALIGNMENTS = {"interpolate": 1, "pairs": 2}  # states per mesh frame


def interpolate_rows(x: jnp.ndarray, n_in: jnp.ndarray, n_out: jnp.ndarray,
                     length: int) -> jnp.ndarray:
  """Linear interpolation with aligned corners (torch's F.interpolate), per row.

  Args:
    x: [B, F, C]; row b's first n_in[b] frames are real.
    n_in, n_out: [B] real input and output lengths.
    length: output frames (>= max n_out; frames past n_out[b] are filler).

  Returns:
    [B, length, C]: output j of row b samples x[b] at j (n_in - 1) / (n_out - 1).
  """
  scale = jnp.where(n_out > 1, (n_in - 1) / jnp.maximum(n_out - 1, 1), 0.0)
  pos = jnp.arange(length, dtype=jnp.float32)[None] * scale[:, None].astype(jnp.float32)
  last = jnp.maximum(n_in - 1, 0)[:, None]
  lo = jnp.minimum(jnp.floor(pos).astype(jnp.int32), last)
  hi = jnp.minimum(lo + 1, last)
  w = (pos - lo)[..., None]
  take = lambda i: jnp.take_along_axis(x, i[..., None], axis=1)  # noqa: E731
  return take(lo) * (1 - w) + take(hi) * w


class FaceFormerAudio(nn.Module):
  """Audio input + [B, T] frame mask -> (states [B, T, P, H], mask [B, T, P]).

  Attributes:
    front_end: 'pretrained' (input: the waveform [B, S, 1]) or 'logmel'
      (input: log-mel [B, F, n_mels]).
    alignment: 'interpolate' | 'pairs' (pretrained only; see the module doc).
    width, levels, kernel_size: the log-mel conv stack (audio_encoder.py).
    fps, feature_rate: mesh frame rate and input rate (the sample rate).
    speech: the pretrained encoder's architecture.
    freeze_features, freeze_transformer: no gradient into its conv features
      (the published setting) or into any of it.
  """
  front_end: str
  alignment: str
  width: int
  levels: int
  kernel_size: int
  fps: float
  feature_rate: float
  speech: SpeechConfig | None = None
  freeze_features: bool = True
  freeze_transformer: bool = False

  @property
  def per_frame(self) -> int:
    """P: the audio states each mesh frame attends to."""
    return ALIGNMENTS[self.alignment] if self.front_end == "pretrained" else 1

  def setup(self):
    if self.front_end == "logmel":
      self.encoder = AudioEncoder(self.width, self.levels, self.kernel_size, self.fps,
                                  self.feature_rate)
    elif self.front_end == "pretrained":
      if self.speech is None or self.alignment not in ALIGNMENTS:
        raise ValueError("a pretrained FaceFormer front end needs its architecture and an "
                         f"alignment in {sorted(ALIGNMENTS)}, got {self.alignment!r}")
      self.encoder = SpeechEncoder(self.speech, freeze_features=self.freeze_features)
    else:
      raise ValueError(f"unknown audio_encoder {self.front_end!r} (logmel | pretrained)")

  def __call__(self, audio: jnp.ndarray, frame_mask: jnp.ndarray
               ) -> tuple[jnp.ndarray, jnp.ndarray]:
    b, t = frame_mask.shape
    if self.front_end == "logmel":
      states = self.encoder(audio, frame_mask)[-1][:, :, None]
      return states, frame_mask[:, :, None]
    wave = audio[..., 0]
    mask = feature_mask(frame_mask, wave.shape[1], self.fps, self.feature_rate)
    p = self.per_frame
    frames_out = jnp.sum(frame_mask, axis=1).astype(jnp.int32)
    kept = {}

    def resample(features, conv_mask):
      n_in = jnp.sum(conv_mask, axis=1).astype(jnp.int32)
      if p == 1:
        out = interpolate_rows(features, n_in, frames_out, t)
        real = jnp.arange(t)[None] < frames_out[:, None]
      else:  # the first 2T encoder frames, two per mesh frame
        f = features.shape[1]
        out = jnp.pad(features, ((0, 0), (0, max(0, p * t - f)), (0, 0)))[:, :p * t]
        idx = jnp.arange(p * t)[None]
        real = (idx < n_in[:, None]) & (idx < p * frames_out[:, None])
      kept["mask"] = real.astype(features.dtype)
      return out, kept["mask"]

    _, last = self.encoder(wave * mask, mask, resample=resample)
    if self.freeze_transformer:
      last = jax.lax.stop_gradient(last)
    return last.reshape(b, t, p, -1), kept["mask"].reshape(b, t, p)
