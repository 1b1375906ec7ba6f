"""The published FaceFormer checkpoints (EvelynFan/FaceFormer `.pth`), read without torch.

  model = from_pytorch("vocaset.pth", "vocaset", num_vertices=5023, num_subjects=8)
  vertices = model.predict(wave, template, subject=0)  # [T, V, 3]

`from_pytorch` maps the official state dict onto `FaceFormer`'s parameters
(torch_checkpoint.py reads the file; nothing but tensors is constructed) and
returns a predictor that does what the official `predict` does: the waveform
normalised to zero mean and unit variance (the demo's Wav2Vec2Processor),
wav2vec 2.0 with the dataset's alignment ('vocaset': conv features
interpolated to the frame count; 'BIWI': two per frame), and the frame count
the official code derives from the encoder's F frames: int(F / 50 * 30) for
VOCASET, F // 2 for BIWI. `params_from_state_dict` is the mapping alone, for
loading the weights into a run (`FaceFormer` parameters, any width).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.errors import InputError
from mmtalker_jax.models.faceformer import FaceFormer
from mmtalker_jax.models.speech.loading import map_weights
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig
from mmtalker_jax.torch_checkpoint import load_state_dict
from mmtalker_jax.waveform import normalize_waveform

# The published settings: dataset -> (frame rate, period, alignment, frames(F)).
DATASETS = {
    "vocaset": (30.0, 30, "interpolate", lambda f: int(f / 50.0 * 30)),
    "BIWI": (25.0, 25, "pairs", lambda f: f // 2),
}
# facebook/wav2vec2-base-960h, the encoder of both published models.
WAV2VEC2_BASE = SpeechConfig()
_LAYER = "transformer_decoder.layers.0."


def _dense(w: np.ndarray, b: np.ndarray | None = None) -> dict:
  return {"kernel": jnp.asarray(w.T)} | ({"bias": jnp.asarray(b)} if b is not None else {})


def params_from_state_dict(state: dict[str, np.ndarray], speech: SpeechConfig,
                           path: str = "") -> dict:
  """FaceFormer params from the official state dict (float32).

  Raises:
    InputError: naming `path`, for missing keys or an encoder that does not
      fit `speech`.
  """
  state = {k: np.asarray(v, np.float32) for k, v in state.items()}
  missing = [k for k in ("audio_feature_map.weight", "vertice_map.weight", "obj_vector.weight",
                         "vertice_map_r.weight", _LAYER + "self_attn.in_proj_weight",
                         _LAYER + "multihead_attn.in_proj_weight") if k not in state]
  if missing:
    raise InputError(path, f"not a FaceFormer state dict: missing {', '.join(missing)}")
  layer = lambda name: state[_LAYER + name]  # noqa: E731
  d = state["vertice_map.weight"].shape[0]
  cross_w, cross_b = layer("multihead_attn.in_proj_weight"), layer("multihead_attn.in_proj_bias")
  encoder = {k.removeprefix("audio_encoder."): v for k, v in state.items()
             if k.startswith("audio_encoder.")}
  norm = lambda n: {"scale": jnp.asarray(layer(f"{n}.weight")),  # noqa: E731
                    "bias": jnp.asarray(layer(f"{n}.bias"))}
  return {
      "audio_encoder": {"encoder": map_weights(encoder, speech, path)},
      "audio_feature_map": _dense(state["audio_feature_map.weight"],
                                  state["audio_feature_map.bias"]),
      "vertex_map": _dense(state["vertice_map.weight"], state["vertice_map.bias"]),
      "style_embedding": {"embedding": jnp.asarray(state["obj_vector.weight"].T)},
      "self_attention_in": _dense(layer("self_attn.in_proj_weight"),
                                  layer("self_attn.in_proj_bias")),
      "self_attention_out": _dense(layer("self_attn.out_proj.weight"),
                                   layer("self_attn.out_proj.bias")),
      "cross_attention_query": _dense(cross_w[:d], cross_b[:d]),
      "cross_attention_memory": _dense(cross_w[d:], cross_b[d:]),
      "cross_attention_out": _dense(layer("multihead_attn.out_proj.weight"),
                                    layer("multihead_attn.out_proj.bias")),
      "feed_forward_in": _dense(layer("linear1.weight"), layer("linear1.bias")),
      "feed_forward_out": _dense(layer("linear2.weight"), layer("linear2.bias")),
      "norm1": norm("norm1"), "norm2": norm("norm2"), "norm3": norm("norm3"),
      "output_map": _dense(state["vertice_map_r.weight"], state["vertice_map_r.bias"]),
  }


def check_sizes(state: dict[str, np.ndarray], width: int, num_vertices: int,
                num_subjects: int, path: str = "") -> None:
  """Raises InputError, naming `path`, when the state dict's vertex and style
  maps do not have the sizes the model is asked for."""
  for key, want in (("vertice_map.weight", (width, 3 * num_vertices)),
                    ("obj_vector.weight", (width, num_subjects))):
    if key in state and tuple(state[key].shape) != want:
      raise InputError(path, f"{key} has shape {list(state[key].shape)}, expected "
                       f"{list(want)} for {num_vertices} vertices, {num_subjects} subjects "
                       f"and width {width}")


@dataclasses.dataclass
class PublishedFaceFormer:
  """A released FaceFormer model and its official prediction recipe."""
  model: FaceFormer
  params: dict
  dataset: str

  def __post_init__(self):
    self._encode = jax.jit(lambda p, wave, style, mask: self.model.apply(
        {"params": p}, wave[..., None], None, style, mask, method=self._motion))

  @staticmethod
  def _motion(module: FaceFormer, wave, template, style, mask):
    return module.encode(wave, template, style, mask)["motion"]

  def num_frames(self, num_samples: int) -> int:
    """The official frame count for `num_samples` samples of 16 kHz audio."""
    speech = self.model.speech
    return DATASETS[self.dataset][3](speech.num_frames(num_samples))

  def predict(self, wave: np.ndarray, template: np.ndarray, subject: int) -> np.ndarray:
    """Vertices [T, V, 3] for raw 16 kHz mono `wave` [S], `template` [V, 3] and
    the training subject's index `subject` (its one-hot position).

    Raises:
      InputError: for audio too short for one frame, a template of another
        size, or a subject index out of range.
    """
    v = self.model.vertex_count
    template = np.asarray(template, np.float32)
    if template.shape != (v, 3):
      raise InputError("", f"template has shape {template.shape}; this model animates ({v}, 3)")
    if not 0 <= int(subject) < self.model.num_styles:
      raise InputError("", f"subject {subject} out of range: the model knows "
                       f"{self.model.num_styles} training subjects")
    wave = np.asarray(wave, np.float32).reshape(-1)
    t = self.num_frames(len(wave)) if len(wave) >= 400 else 0
    if t < 1:
      raise InputError("", f"{len(wave) / 16000:.3f} s of audio is too short for one frame")
    motion = self._encode(self.params, jnp.asarray(normalize_waveform(wave))[None],
                          jnp.array([int(subject)]), jnp.ones((1, t), jnp.float32))
    return np.asarray(motion[0]).reshape(t, v, 3) * self.model.displacement_scale + template


def from_pytorch(path: str | os.PathLike, dataset: str, num_vertices: int, num_subjects: int,
                 speech: SpeechConfig = WAV2VEC2_BASE, period: int | None = None
                 ) -> PublishedFaceFormer:
  """A published FaceFormer `.pth` as a predictor (see the module doc).

  Args:
    path: the state dict the official main.py saves.
    dataset: 'vocaset' or 'BIWI' (rate, period, alignment, frame count).
    num_vertices, num_subjects: V and the training subjects (8 / 6 published).
    speech: the wav2vec 2.0 architecture (default: wav2vec2-base-960h).
    period: the period bias's period (default: the dataset's, 30 / 25).

  Raises:
    InputError: naming `path`, for an unreadable or unsafe file, or weights
      that do not fit these sizes.
  """
  if dataset not in DATASETS:
    raise InputError(str(path), f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
  fps, default_period, alignment, _ = DATASETS[dataset]
  state = load_state_dict(path)
  d = int(state["vertice_map.weight"].shape[0]) if "vertice_map.weight" in state else 0
  check_sizes(state, d, num_vertices, num_subjects, str(path))
  params = params_from_state_dict(state, speech, str(path))
  model = FaceFormer(assets=None, num_styles=num_subjects, fps=fps, feature_rate=16000.0,
                     displacement_scale=1.0, width=d, num_heads=4,
                     period=int(period or default_period), dropout=0.0, teacher_forcing=False,
                     audio_encoder="pretrained", audio_alignment=alignment, speech=speech,
                     num_vertices=num_vertices)
  return PublishedFaceFormer(model, params, dataset)
