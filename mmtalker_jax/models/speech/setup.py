"""Turning `audio_encoder='pretrained'` + a checkpoint folder into a complete config.

`resolve(config)` runs when training starts. It reads the folder's
config.json (and preprocessor_config.json when there is one) and writes
everything the run needs into the config that is saved with every checkpoint:
the architecture (config.model.speech_architecture), the hidden states each
fusion level takes (config.model.speech_layers), and the audio input the data
must provide (config.data.features: the waveform at the encoder's sample rate,
normalised as its feature extractor does). Evaluation and predict.py rebuild
the model from that saved config and read the (possibly fine-tuned) encoder
weights from the run's checkpoint: they never need the folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import ml_collections

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.models.speech.loading import read_folder, speech_config
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig

# The params subtree the encoder's weights go to (MMTalker's submodule names).
ENCODER_PATH = ("audio_encoder", "encoder")


def even_layers(num_hidden_layers: int, levels: int) -> tuple[int, ...]:
  """`levels` hidden-state indices spread evenly up to the last layer: 12, 3 -> (4, 8, 12)."""
  return tuple(round((i + 1) * num_hidden_layers / levels) for i in range(levels))


def resolve(config: ml_collections.ConfigDict) -> None:
  """Fills in a pretrained encoder's settings (in place; nothing for 'logmel').

  Raises:
    InputError: for a missing or unusable checkpoint folder, or layer choices
      that do not fit it.
  """
  model, data = config.model, config.data
  kind = model.get("audio_encoder", "logmel")
  if kind == "logmel":
    return
  if kind != "pretrained":
    raise InputError("", f"config.model.audio_encoder={kind!r}: expected logmel | pretrained")
  folder = data.get("speech_checkpoint", "")
  if not folder:
    raise InputError("", "config.model.audio_encoder=pretrained needs "
                     "config.data.speech_checkpoint: a local Hugging Face wav2vec 2.0 / "
                     "HuBERT folder (config.json + model.safetensors)")
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isfile(os.path.join(folder, "config.json")):
    read_folder(folder)  # raises the folder's own one-line error
  path = os.path.join(folder, "config.json")
  arch = speech_config(fileio.read_json(path), path)
  preprocessor = os.path.join(folder, "preprocessor_config.json")
  extractor = fileio.read_json(preprocessor) if os.path.isfile(preprocessor) else {}
  with config.unlocked():
    data.speech_checkpoint = folder
  apply_architecture(config, arch, extractor, where=folder)


def apply_architecture(config: ml_collections.ConfigDict, arch: SpeechConfig,
                       extractor: dict | None = None, where: str = "") -> None:
  """The config changes of `resolve` for a known architecture (in place).

  Args:
    arch: the encoder's architecture.
    extractor: its preprocessor_config.json (sampling_rate, do_normalize).
    where: the folder, for error messages.
  """
  model, data = config.model, config.data
  extractor = extractor or {}
  levels = int(model.audio_levels)
  layers = tuple(int(x) for x in model.get("speech_layers", ())) or even_layers(
      arch.num_hidden_layers, levels)
  if len(layers) != levels or not all(0 <= x <= arch.num_hidden_layers for x in layers):
    raise InputError(where, f"config.model.speech_layers={layers} must name "
                     f"audio_levels={levels} hidden states in 0..{arch.num_hidden_layers}")
  rate = int(extractor.get("sampling_rate", 16000))
  with config.unlocked():
    model.speech_layers = layers
    model.speech_architecture = ml_collections.ConfigDict(dataclasses.asdict(arch))
    data.features.kind = "waveform"
    data.features.sample_rate = rate
    data.features.feature_rate = float(rate)
    # transformers' Wav2Vec2FeatureExtractor normalises unless told otherwise.
    data.features.normalize = bool(extractor.get("do_normalize", True))


def initial_weights(config: ml_collections.ConfigDict) -> dict | None:
  """{'audio_encoder': {'encoder': params}} from the checkpoint folder, or None
  ('logmel'). Call after `resolve`."""
  if config.model.get("audio_encoder", "logmel") != "pretrained":
    return None
  _, params = read_folder(config.data.speech_checkpoint)
  tree: dict = params
  for name in reversed(ENCODER_PATH):
    tree = {name: tree}
  return tree


def frozen_parameters(model_cfg: ml_collections.ConfigDict):
  """`make_optimizer`'s `frozen` predicate for this model, or None when every
  parameter trains (the log-mel model: its optimizer state keeps its layout)."""
  if model_cfg.get("audio_encoder", "logmel") != "pretrained":
    return None
  return functools.partial(is_frozen, model_cfg)


def is_frozen(model_cfg: ml_collections.ConfigDict, path: tuple[str, ...]) -> bool:
  """Whether the optimizer leaves the parameter at `path` (names) unchanged."""
  if model_cfg.get("audio_encoder", "logmel") != "pretrained":
    return False
  if path[:len(ENCODER_PATH)] != ENCODER_PATH:
    return False
  if model_cfg.get("freeze_speech_transformer", False):
    return True
  return bool(model_cfg.get("freeze_feature_encoder", True)) and \
      path[len(ENCODER_PATH)] == "feature_extractor"
