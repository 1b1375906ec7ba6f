"""Pretrained speech encoders against transformers' own numbers (fixtures, no torch)."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mmtalker_jax.errors import InputError
from mmtalker_jax.models.speech import load_speech_encoder, normalize_waveform

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "speech")
VARIANTS = sorted(os.listdir(FIXTURES))


def test_every_variant_is_covered():
  # post-LN and pre-LN, group and layer norm, wav2vec2 and HuBERT, both weight-norm spellings
  assert VARIANTS == ["hubert_group_postln", "hubert_layer_preln_noprojnorm",
                      "wav2vec2_group_postln", "wav2vec2_layer_preln"]
  spellings = {name: any("weight_g" in k for k in load_file(
      os.path.join(FIXTURES, name, "model.safetensors"))) for name in VARIANTS}
  assert set(spellings.values()) == {True, False}


@pytest.mark.parametrize("name", VARIANTS)
def test_hidden_states_equal_transformers(name):
  folder = os.path.join(FIXTURES, name)
  ref = np.load(os.path.join(folder, "reference.npz"))
  encoder = load_speech_encoder(folder)
  states = encoder.hidden_states(ref["wave"])
  expected = sorted((k for k in ref.files if k.startswith("hidden_")), key=lambda k: int(k[7:]))
  assert len(states) == len(expected) == encoder.config.num_hidden_layers + 1
  for got, key in zip(states, expected):
    assert got.shape == ref[key].shape == (2, encoder.config.num_frames(4000), 32)
    np.testing.assert_allclose(np.asarray(got), ref[key], rtol=1e-4,
                               atol=1e-4 * np.abs(ref[key]).max(), err_msg=f"{name} {key}")
  np.testing.assert_allclose(np.asarray(encoder.last_hidden_state(ref["wave"])),
                             ref["last_hidden_state"], rtol=1e-4,
                             atol=1e-4 * np.abs(ref["last_hidden_state"]).max())


def test_normalize_waveform_is_zero_mean_unit_variance():
  wave = 3.0 + 0.5 * np.random.default_rng(0).standard_normal(16000)
  out = normalize_waveform(wave)
  assert out.dtype == np.float32 and abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-3


def copy_fixture(tmp_path, name="wav2vec2_layer_preln"):
  folder = tmp_path / name
  shutil.copytree(os.path.join(FIXTURES, name), folder)
  return folder


def test_missing_or_misshaped_tensors_are_named(tmp_path):
  folder = copy_fixture(tmp_path)
  path = folder / "model.safetensors"
  tensors = load_file(path)
  del tensors["encoder.layers.1.attention.k_proj.weight"]
  tensors["encoder.layer_norm.bias"] = np.zeros(7, np.float32)
  save_file(tensors, path)
  with pytest.raises(InputError) as e:
    load_speech_encoder(str(folder))
  message = str(e.value)
  assert "encoder_layers_1/attention/k_proj/kernel" in message
  assert "encoder.layer_norm.bias [7] (expected [32])" in message


def test_folder_problems_are_one_line(tmp_path):
  folder = copy_fixture(tmp_path)
  os.rename(folder / "model.safetensors", folder / "pytorch_model.bin")
  with pytest.raises(InputError, match="pytorch_model.bin only; convert it once"):
    load_speech_encoder(str(folder))
  with pytest.raises(InputError, match="speech checkpoint folder not found"):
    load_speech_encoder(str(tmp_path / "nowhere"))
  other = copy_fixture(tmp_path, "hubert_group_postln")
  config = json.loads((other / "config.json").read_text())
  config["model_type"] = "whisper"
  (other / "config.json").write_text(json.dumps(config))
  with pytest.raises(InputError, match="'whisper' is not a wav2vec2 or hubert checkpoint"):
    load_speech_encoder(str(other))
