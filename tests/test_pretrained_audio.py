"""A pretrained speech encoder inside MMTalker: padding, long-input windows, the whole run."""

import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from mmtalker_jax.alignment import num_feature_frames
from mmtalker_jax.data.audio import load_audio
from mmtalker_jax.errors import InputError
from mmtalker_jax.models.speech import load_speech_encoder, normalize_waveform
from mmtalker_jax.models.speech import setup as speech_setup
from mmtalker_jax.models.speech.levels import PretrainedAudio, crossfade_weights
from mmtalker_jax.models.speech.wav2vec2 import channel_statistics, conv_mask, first_conv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "speech")
FPS = 30.0


def speech_of(root, seconds):
  """[S] normalised speech: the corpus's sentences joined, cut to `seconds`."""
  files = sorted(glob.glob(os.path.join(root, "wav", "*.wav")))
  wave = np.concatenate([load_audio(f, 16000) for f in files])
  while len(wave) < seconds * 16000:
    wave = np.concatenate([wave, wave])
  return normalize_waveform(wave[:int(seconds * 16000)])


def levels_fn(name, window=0.0, overlap=0.0):
  """(apply(wave [B,S,1], frame_mask [B,T]) -> 2 x [B,T,16], the encoder)."""
  enc = load_speech_encoder(os.path.join(FIXTURES, name))
  module = PretrainedAudio(enc.config, (1, 2), 16, FPS, 16000.0, True, False, window, overlap)
  params = dict(module.init(jax.random.key(0), jnp.zeros((1, 4000, 1)), jnp.ones((1, 6)))["params"])
  params["encoder"] = enc.params
  return jax.jit(lambda w, m: module.apply({"params": params}, w, m)), enc


def as_input(wave, num_frames):
  s = num_feature_frames(num_frames, FPS, 16000.0)
  out = np.zeros((1, s, 1), np.float32)
  out[0, :min(s, len(wave)), 0] = wave[:s]
  return out


def test_batch_padding_changes_no_real_frame(tiny_corpus_root):
  # Group norm: the masked statistics; attention and the position conv: masked too.
  apply, _ = levels_fn("wav2vec2_group_postln")
  wave = speech_of(tiny_corpus_root, 1.5)
  alone = apply(as_input(wave, 45), np.ones((1, 45), np.float32))
  other = speech_of(tiny_corpus_root, 2.2)[::-1].copy()
  batch = np.concatenate([as_input(wave, 66), as_input(other, 66)])
  mask = np.ones((2, 66), np.float32)
  mask[0, 45:] = 0
  padded = apply(batch, mask)
  for a, p in zip(alone, padded):
    assert float(jnp.abs(p[0]).max()) > 0.1
    np.testing.assert_allclose(np.asarray(p[0, :45]), np.asarray(a[0]), atol=2e-5)


def test_crossfade_weights_sum_to_one():
  w = crossfade_weights(3, 10, 4)
  total = np.zeros(2 * 6 + 10)
  for k in range(3):
    total[k * 6:k * 6 + 10] += w[k]
  np.testing.assert_allclose(total, 1.0, atol=1e-6)
  assert np.all(np.diff(w[1, :4]) > 0) and w[0, 0] == 1 and w[-1, -1] == 1


@pytest.mark.parametrize("name", ["wav2vec2_group_postln", "wav2vec2_layer_preln"])
def test_long_input_windows_have_no_seam(tiny_corpus_root, name):
  """8 s in windows of 2 s: close to one pass over the whole input, and where
  windows meet the difference changes little (a hard cut, overlap 0, does
  jump there: the check can fail)."""
  t = int(8 * FPS)
  x, m = as_input(speech_of(tiny_corpus_root, 8), t), np.ones((1, t), np.float32)
  full = np.asarray(levels_fn(name)[0](x, m)[1][0])
  scale = np.median(np.linalg.norm(np.diff(full, axis=0), axis=1))

  def join_step(window, overlap):
    out = np.asarray(levels_fn(name, window, overlap)[0](x, m)[1][0])
    step = np.linalg.norm(np.diff(out - full, axis=0), axis=1) / scale
    joins = [int(k * (window - overlap) * FPS) for k in range(1, 4)]
    near = max(step[j - 2:j + int(overlap * FPS) + 2].max() for j in joins)
    return out, near

  faded, seam = join_step(2.0, 0.6)
  assert np.linalg.norm(faded - full) / np.linalg.norm(full) < 0.05
  assert seam < 0.1
  _, cut = join_step(2.0, 0.0)
  assert cut > 3 * seam, (cut, seam)


def test_window_statistics_are_the_whole_inputs(tiny_corpus_root):
  enc = load_speech_encoder(os.path.join(FIXTURES, "wav2vec2_group_postln"))
  wave = speech_of(tiny_corpus_root, 3.0)[None]
  mask = np.ones_like(wave)
  mask[:, -5000:] = 0
  module = PretrainedAudio(enc.config, (1,), 8, FPS, 16000.0, True, False, 1.0, 0.2)
  params = dict(module.init(jax.random.key(0), jnp.zeros((1, 4000, 1)), jnp.ones((1, 6)))["params"])
  params["encoder"] = enc.params
  mean, var = module.apply({"params": params}, jnp.asarray(wave * mask), jnp.asarray(mask),
                           chunk=1000, method=PretrainedAudio._norm_stats)
  fe = enc.params["feature_extractor"]
  y = first_conv(fe, enc.config, jnp.asarray(wave * mask))
  ref_mean, ref_var = channel_statistics(y, conv_mask(jnp.asarray(mask), 10, 5))
  np.testing.assert_allclose(np.asarray(mean), np.asarray(ref_mean), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(var), np.asarray(ref_var), rtol=1e-4, atol=1e-5)


def pretrained_config(folder, **model):
  config = tiny.get_config()
  config.model.audio_encoder = "pretrained"
  config.data.speech_checkpoint = str(folder)
  config.model.update(model)
  return config


def test_resolve_fills_the_run_config_from_the_folder(tmp_path):
  folder = tmp_path / "enc"
  shutil.copytree(os.path.join(FIXTURES, "hubert_group_postln"), folder)
  (folder / "preprocessor_config.json").write_text(json.dumps(
      {"do_normalize": False, "sampling_rate": 16000}))
  config = pretrained_config(folder)
  speech_setup.resolve(config)
  assert config.model.speech_layers == (1, 2)  # 2 levels over 2 layers
  assert config.model.speech_architecture.hidden_size == 32
  assert config.data.features.kind == "waveform" and config.data.features.feature_rate == 16000
  assert config.data.features.normalize is False
  assert speech_setup.even_layers(12, 3) == (4, 8, 12)
  frozen = speech_setup.is_frozen
  assert frozen(config.model, ("audio_encoder", "encoder", "feature_extractor", "x", "kernel"))
  assert not frozen(config.model, ("audio_encoder", "encoder", "encoder_layers_0", "kernel"))
  assert not frozen(config.model, ("audio_encoder", "proj0", "kernel"))
  config.model.freeze_speech_transformer = True
  assert frozen(config.model, ("audio_encoder", "encoder", "encoder_layers_0", "kernel"))


@pytest.mark.parametrize("change, message", [
    (dict(folder=""), "needs config.data.speech_checkpoint"),
    (dict(folder="missing"), "not found"),
    (dict(speech_layers=(1, 5)), "speech_layers=(1, 5) must name audio_levels=2 hidden states in 0..2"),
    (dict(speech_layers=(1,)), "must name audio_levels=2"),
])
def test_bad_pretrained_settings_are_named(tmp_path, change, message):
  folder = change.pop("folder", os.path.join(FIXTURES, "wav2vec2_layer_preln"))
  if folder == "missing":
    folder = str(tmp_path / "missing")
  with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
    speech_setup.resolve(pretrained_config(folder, **change))


def cli(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_pretrained_run_trains_resumes_evaluates_and_predicts_without_the_folder(
    tiny_corpus_root, tmp_path):
  folder = tmp_path / "wav2vec2"
  shutil.copytree(os.path.join(FIXTURES, "wav2vec2_group_postln"), folder)
  work = tmp_path / "run"
  args = ["--config", "configs/tiny.py", "--workdir", str(work),
          f"--config.data.root={tiny_corpus_root}", "--config.model.audio_encoder=pretrained",
          f"--config.data.speech_checkpoint={folder}", "--config.train.num_steps=4",
          "--config.train.eval_every=2", "--config.train.log_every=2",
          "--config.train.global_batch_size=2", "--config.eval.batch_size=2",
          "--config.model.gcn_blocks=1"]  # a shallower mesh encoder: this test is about speech
  first = cli("train.py", *args)
  assert first.returncode == 0, first.stderr[-3000:]

  from mmtalker_jax.training import restore
  run = restore.restore(str(work))
  assert run.step == 4
  trained = run.params["audio_encoder"]["encoder"]
  original = load_speech_encoder(str(folder)).params
  diff = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                                trained, original)
  assert max(jax.tree_util.tree_leaves(diff["feature_extractor"])) == 0.0  # frozen
  assert max(jax.tree_util.tree_leaves(diff["encoder_layers_1"])) > 1e-4  # fine-tuned

  # Resumed from step 2 (step 4 removed), the run ends where the unbroken one did.
  shutil.rmtree(work / "checkpoints" / "4")
  again = cli("train.py", *args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming at step 2" in again.stdout
  resumed = restore.restore(str(work))
  for a, b in zip(jax.tree_util.tree_leaves(run.params), jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)

  shutil.rmtree(folder)  # the run's checkpoint holds everything from here on
  out = tmp_path / "eval.json"
  ev = cli("evaluate.py", "--ckpt", str(work), "--out", str(out))
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert np.isfinite(json.loads(out.read_text())["model"]["lve"])
  wav = sorted(glob.glob(os.path.join(tiny_corpus_root, "wav", "*.wav")))[0]
  pred = cli("predict.py", "--ckpt", str(work), "--audio", wav, "--out_dir",
             str(tmp_path / "pred"), "--formats", "npy")
  assert pred.returncode == 0, pred.stderr[-3000:]
  frames = np.load(tmp_path / "pred" / (os.path.basename(wav)[:-4] + ".npy"))
  assert frames.shape[0] == int(np.floor(len(load_audio(wav, 16000)) / 16000 * 30 + 0.5))
  assert np.all(np.isfinite(frames)) and np.abs(frames - frames[0]).max() > 0
