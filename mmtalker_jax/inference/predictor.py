"""Speech to animation with a restored model, at any length and resolution.

The audio input is padded (with silence) to a multiple of
`decode.length_bucket` frames so a new length rarely recompiles; padding
changes nothing in the real frames. Decoding is `ChunkedDecoder`'s, the same
path evaluation takes. A run with predicted key motions (models/key_motion.py)
finds the key frames of the speech itself: pocketsphinx's phones
(keymotion/phones.py), and speech in which it recognizes nothing is animated
from the audio alone.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from mmtalker_jax import alignment
from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference.decoder import ChunkedDecoder, decode_budget
from mmtalker_jax.training.restore import Restored


def num_frames_for(num_samples: int, sample_rate: int, fps: float) -> int:
  """Mesh frames for audio of `num_samples`: duration x fps, rounded half up.

  Raises:
    ValueError: if the audio is shorter than one frame.
  """
  frames = num_samples * fps / sample_rate
  if frames < 1:
    raise ValueError(f"audio lasts {num_samples / sample_rate * 1000:.1f} ms, shorter than "
                     f"one frame ({1000 / fps:.1f} ms at {fps:g} fps)")
  return int(math.floor(frames + 0.5))


@dataclasses.dataclass
class KeyFrames:
  """How the last `animate` call found its key frames."""
  source: str  # 'pocketsphinx'
  phones: int  # speech phones recognized (silence and noise not counted)
  key_frames: int
  seconds: float  # time spent recognizing


class Predictor:
  """Animates speech with a restored checkpoint.

  Args:
    run: the restored checkpoint (with its templates).
    chunk_mib: memory budget of one regressor call (default: config.decode's).
    length_bucket: encoder inputs are padded to a multiple of this many frames
      (default: config.decode's).
  """

  def __init__(self, run: Restored, chunk_mib: float | None = None,
               length_bucket: int | None = None):
    settings = run.config.decode
    self.run = run
    self.model = run.model
    self.bucket = int(length_bucket or settings.length_bucket)
    self.features = dict(run.config.data.features)
    self.fps = float(run.config.data.fps)
    self.decoder = ChunkedDecoder(self.model, float(chunk_mib or decode_budget(run.config)))
    if "key_motion" in self.model.key_inputs:
      raise InputError(run.workdir, "an oracle key-motion run reads the true motion at key "
                       "frames, which new speech does not have: score it with evaluate.py on "
                       "its corpus, and predict with a key_motion='predicted' run")
    self._recognizer = None
    self.key_frames: KeyFrames | None = None  # of the last `inputs` call

  @property
  def styles(self) -> list[str]:
    return self.run.styles

  def style_index(self, style: str | None) -> int:
    """Index of a training subject's style (default: the first).

    Raises:
      InputError: for an unknown style, listing the known ones.
    """
    if style is None:
      return 0
    if style not in self.styles:
      raise InputError("", f"unknown style {style!r}; known styles: {', '.join(self.styles)}")
    return self.styles.index(style)

  def template(self, style: str | None) -> np.ndarray:
    """[V,3] the neutral face animated: the style subject's own template."""
    subject = self.styles[self.style_index(style)]
    return self.run.templates.get(subject, self.model.assets.vertices)

  def inputs(self, audio: np.ndarray, style: str | None = None,
             template: np.ndarray | None = None) -> tuple[dict, int]:
    """The model's inputs for 16 kHz mono `audio` [S], padded to the length bucket.

    Returns:
      ({'audio' [1,F,C], 'template' [1,V,3], 'style' [1], 'frame_mask' [1,T_pad]},
       T = num_frames_for(S)).
    """
    sr = int(self.features["sample_rate"])
    t = num_frames_for(len(audio), sr, self.fps)
    t_pad = -(-t // self.bucket) * self.bucket
    feats = audio_lib.features(audio, t, self.fps, self.features)
    n_feat = alignment.num_feature_frames(t_pad, self.fps, self.model.feature_rate)
    feats = np.pad(feats, ((0, n_feat - len(feats)), (0, 0)),
                   constant_values=audio_lib.padding_value(self.features))
    mask = np.zeros((1, t_pad), np.float32)
    mask[0, :t] = 1
    if template is None:
      template = self.template(style)
    inputs = {"audio": feats[None], "template": template[None].astype(np.float32),
              "style": np.array([self.style_index(style)], np.int32), "frame_mask": mask}
    if "key_visemes" in self.model.key_inputs:
      inputs["key_visemes"] = np.pad(self._key_visemes(audio, sr, t), (0, t_pad - t))[None]
    return inputs, t

  def _key_visemes(self, audio: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """[T] key visemes of the speech (pocketsphinx's phones); all 0 when it
    recognizes no speech. Sets `key_frames`."""
    from mmtalker_jax.keymotion import phones, visemes  # deferred: pocketsphinx

    start = time.perf_counter()
    if self._recognizer is None:
      self._recognizer = phones.Recognizer()
    wave = audio
    if sample_rate != phones.SAMPLE_RATE:
      import librosa
      wave = librosa.resample(audio, orig_sr=sample_rate, target_sr=phones.SAMPLE_RATE)
    found = self._recognizer(wave)
    keys = visemes.key_frames(found, self.fps, num_frames)
    speech = sum(visemes.viseme(p) != "silence" for p, _, _ in found)
    self.key_frames = KeyFrames("pocketsphinx", speech, len(keys), time.perf_counter() - start)
    return visemes.key_track(keys, num_frames)

  def animate(self, audio: np.ndarray, style: str | None = None,
              points: tuple[np.ndarray, np.ndarray] | None = None,
              template: np.ndarray | None = None) -> np.ndarray:
    """Vertices over time for 16 kHz mono `audio`.

    Args:
      audio: [S] float32 at the config's sample rate.
      style: a training subject's name (default: the first).
      points: (face_ids [K], bary [K,3]) to predict at; default every vertex.
      template: [V,3] neutral face; default the style subject's template.

    Returns:
      [T,K,3] float32, T = num_frames_for(S).
    """
    inputs, t = self.inputs(audio, style, template)
    return self.decoder(self.run.params, inputs, points, num_frames=t)[0]
