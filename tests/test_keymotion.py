"""Key motions, stage one: phone timelines, visemes, key frames, the align CLI."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import soundfile

from mmtalker_jax.data.audio import load_audio
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.training.step import compute_losses
from mmtalker_jax.data.synthetic import corpus as synth
from mmtalker_jax.errors import InputError
from mmtalker_jax.keymotion import phones, visemes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARPABET = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH "
           "T TH UH UW V W Y Z ZH").split()


def test_every_arpabet_phone_has_one_viseme():
  table = [p for ps in visemes.VISEMES.values() for p in ps]
  assert sorted(table) == sorted(ARPABET + ["SIL"]) and len(set(table)) == len(table)
  assert visemes.viseme("ah0") == "open" and visemes.viseme("+NSN+") == "silence"
  assert visemes.viseme("M") == "bilabial" and visemes.viseme("V") == "labiodental"
  with pytest.raises(ValueError, match="unknown phone 'QQ'"):
    visemes.viseme("QQ")


def test_key_frames_sit_mid_run_of_key_visemes():
  timeline = [("SIL", 0.0, 0.2), ("M", 0.2, 0.3), ("B", 0.3, 0.36), ("AA", 0.36, 0.5),
              ("T", 0.5, 0.55), ("UW", 0.55, 0.7), ("F", 0.7, 0.8), ("SIL", 0.8, 1.0)]
  # M B: one closure from 0.2 to 0.36, middle 0.28 s -> frame 8 at 30 fps
  assert visemes.key_frames(timeline, 30.0) == [
      (8, "bilabial"), (12, "open"), (18, "rounded"), (22, "labiodental")]
  assert visemes.key_frames(timeline, 30.0, num_frames=18) == [(8, "bilabial"), (12, "open")]


def test_synthtalk_timelines_are_the_generators(tiny_config, tiny_corpus_root):
  spec = synth.spec_from_config(tiny_config.data)
  for stem in ("SynthTalk_S01_sentence01", "SynthTalk_S03_sentence06"):
    timeline = phones.from_synthtalk(spec, stem)
    frames = np.load(os.path.join(tiny_corpus_root, "vertices_npy", stem + ".npy")).shape[0]
    assert timeline[0][0] == timeline[-1][0] == "SIL" and timeline[0][1] == 0.0
    assert all(a[2] == pytest.approx(b[1]) for a, b in zip(timeline, timeline[1:]))
    assert frames == int(timeline[-1][2] * spec.fps)  # how the generator sized the take
  with pytest.raises(InputError, match="SynthTalk_S09_sentence01: not a take"):
    phones.from_synthtalk(spec, "SynthTalk_S09_sentence01")


def test_alignment_files_are_read_and_bad_ones_named(tmp_path):
  path = tmp_path / "a.json"
  path.write_text(json.dumps({"phones": [["SIL", 0, 0.1], ["m", 0.1, 0.2]]}))
  assert phones.read_file(str(path)) == [("SIL", 0.0, 0.1), ("m", 0.1, 0.2)]
  for bad, message in (({"phones": [["XX", 0, 1]]}, "unknown phone 'XX'"),
                       ({"phones": [["M", 0.3, 0.2]]}, "start <= end"),
                       ([1, 2], "expected {")):
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match=message):
      phones.read_file(str(path))


def test_a_corpus_alignment_file_comes_first(tiny_config, tmp_path):
  spec = synth.spec_from_config(tiny_config.data)
  stem = "SynthTalk_S01_sentence01"
  found, source = phones.for_sequence(str(tmp_path), stem, spec=spec)
  assert source == "synthtalk" and found == phones.from_synthtalk(spec, stem)
  os.makedirs(tmp_path / "phones")
  (tmp_path / "phones" / f"{stem}.json").write_text(phones.to_json([("SIL", 0.0, 2.0)]))
  assert phones.for_sequence(str(tmp_path), stem, spec=spec) == ([("SIL", 0.0, 2.0)], "file")
  with pytest.raises(InputError, match="no alignment file, and no audio"):
    phones.for_sequence(str(tmp_path), "other", spec=None)


def test_pocketsphinx_finds_synthtalks_boundaries(tiny_config, tiny_corpus_root):
  spec = synth.spec_from_config(tiny_config.data)
  recognize = phones.Recognizer()
  for stem in ("SynthTalk_S01_sentence01", "SynthTalk_S02_sentence03"):
    truth = phones.from_synthtalk(spec, stem)
    found = recognize(load_audio(os.path.join(tiny_corpus_root, "wav", stem + ".wav"), 16000))
    true_b = np.array([s for _, s, _ in truth[1:]])
    found_b = np.array([s for _, s, _ in found[1:]])
    within = np.abs(true_b[:, None] - found_b[None]).min(1) <= 0.03
    assert within.mean() > 0.65, (stem, within.mean())  # 0.72 and 0.82 measured


def align_cli(*args):
  return subprocess.run([sys.executable, "-m", "mmtalker_jax.keymotion.align", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_align_cli_writes_keys_and_notes_silence(tiny_corpus_root, tmp_path):
  wav = os.path.join(tiny_corpus_root, "wav", "SynthTalk_S01_sentence01.wav")
  out = tmp_path / "keys.json"
  proc = align_cli(wav, "--fps", "30", "--out", str(out))
  assert proc.returncode == 0, proc.stderr
  keys = json.loads(out.read_text())
  assert keys["source"] == "pocketsphinx" and keys["fps"] == 30.0
  assert len(keys["phones"]) == len(keys["visemes"]) > 10
  assert all(0 <= f < 60 and v in visemes.KEY_VISEMES for f, v in keys["key_frames"])
  assert [f for f, _ in keys["key_frames"]] == sorted({f for f, _ in keys["key_frames"]})
  # with an alignment file, its phones are used as they are
  given = tmp_path / "given.json"
  given.write_text(json.dumps({"phones": [["SIL", 0, 0.5], ["P", 0.5, 0.6], ["SIL", 0.6, 2]]}))
  proc = align_cli(wav, "--phones", str(given), "--out", str(out))
  assert proc.returncode == 0, proc.stderr
  assert json.loads(out.read_text())["key_frames"] == [[16, "bilabial"]]

  silent = tmp_path / "silence.wav"
  soundfile.write(silent, np.zeros(16000, np.float32), 16000)
  proc = align_cli(str(silent), "--out", str(tmp_path / "s.json"))
  assert proc.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["key_frames"] == []
  proc = align_cli(str(tmp_path / "missing.wav"))
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"error: {tmp_path / 'missing.wav'}: audio file not found"


# --- stages two and three: acquisition and completion in the networks ------------------------

def test_the_guide_is_linear_between_key_frames_and_fades_outside():
  from mmtalker_jax.models.key_motion import interpolate_keys

  track = np.zeros((1, 12), np.int32)
  track[0, 3], track[0, 7] = 1, 4  # key frames 3 and 7
  values = np.zeros((1, 12, 1), np.float32)
  values[0, 3], values[0, 7] = 2.0, 6.0
  values[0, 5] = 100.0  # not a key frame: never read
  guide, gaps = interpolate_keys(jnp.asarray(values), jnp.asarray(track), fade_frames=2.0,
                                 gap_frames=4.0)
  np.testing.assert_allclose(np.asarray(guide)[0, :, 0],
                             [0, 0, 2 * 0.5, 2, 3, 4, 5, 6, 6 * 0.5, 0, 0, 0], atol=1e-6)
  # frames since the previous key and to the next, over 4 frames, clipped; none: 1
  np.testing.assert_allclose(np.asarray(gaps)[0, [0, 3, 5, 9]],
                             [[1, 0.75], [0, 0], [0.5, 0.5], [0.5, 1]], atol=1e-6)
  none, gaps = interpolate_keys(jnp.asarray(values), jnp.zeros((1, 12), jnp.int32), 2.0, 4.0)
  assert float(jnp.abs(none).max()) == 0.0 and float(gaps.min()) == 1.0


def key_batch(b, t, v, seed=0):
  rng = np.random.default_rng(seed)
  track = np.zeros((b, t), np.int32)
  track[:, [2, 9, 15]] = [1, 4, 2]
  motion = np.zeros((b, t, v, 3), np.float32)
  motion[track > 0] = 1e-3 * rng.standard_normal((int((track > 0).sum()), v, 3))
  return track, motion


@pytest.mark.parametrize("network", ["mmtalker", "faceformer"])
def test_an_untrained_oracle_network_plays_the_key_motions_and_their_interpolation(network):
  """Both output layers start at zero, so before training an oracle network's
  displacement is the guide: the true motion at key frames, linear between them."""
  from tests import test_faceformer, test_model

  if network == "mmtalker":
    model = test_model.small_model(60).clone(key_motion="oracle")
    x = test_model.inputs(model, 2, 24)
    args = (x["audio"], x["template"], x["style"], x["frame_mask"])
  else:
    model, vertices = test_faceformer.small_model(key_motion="oracle")
    args = test_faceformer.inputs(vertices, 24, batch=2)
  v = model.assets.num_vertices
  track, motion = key_batch(2, 24, v)
  keys = {"key_visemes": jnp.asarray(track), "key_motion": jnp.asarray(motion)}
  params = jax.jit(model.init)({"params": jax.random.key(0)}, *args, keys=keys)["params"]
  disp, _ = jax.jit(lambda p: model.apply({"params": p}, *args, keys=keys))(params)
  disp = np.asarray(disp)
  np.testing.assert_allclose(disp[:, [2, 9, 15]], motion[:, [2, 9, 15]], atol=1e-9)
  between = motion[:, 2] + (motion[:, 9] - motion[:, 2]) * 3 / 7  # frame 5
  np.testing.assert_allclose(disp[:, 5], between, atol=1e-9)
  # faded out 6 frames (0.2 s) past the last key frame
  assert np.abs(disp[:, 16]).max() > 0 and np.abs(disp[:, 21:]).max() == 0.0
  with pytest.raises(ValueError, match="needs the batch inputs"):
    model.apply({"params": params}, *args)


def test_only_the_acquisition_loss_trains_the_acquisition():
  """Completion reads the acquired key motions without a gradient: the point
  loss leaves the acquisition's weights alone, its own loss moves them."""
  from tests import test_model

  model = test_model.small_model(60).clone(key_motion="predicted")
  x = test_model.inputs(model, 2, 20)
  track, motion = key_batch(2, 20, 60)
  template = np.asarray(x["template"])
  batch = {**x, "key_visemes": jnp.asarray(track),
           "vertices": jnp.asarray(template[:, None] + motion + 1e-4)}
  params = jax.jit(model.init)({"params": jax.random.key(0)}, x["audio"], x["template"],
                               x["style"], x["frame_mask"],
                               keys={"key_visemes": batch["key_visemes"]})["params"]
  params = test_model.randomize_output(params)
  # the basis starts at zero (so acquisition's coefficients get no gradient yet): give it weights
  kernel = params["key_basis"]["Dense_1"]["kernel"]
  params["key_basis"]["Dense_1"]["kernel"] = 0.5 * jax.random.normal(jax.random.key(3),
                                                                      kernel.shape)
  loss_cfg = ml_collections.ConfigDict(dict(point_weight=1.0, velocity_weight=1.0))

  @jax.jit
  def grads(p, key_weight):  # the point losses, and the acquisition's weighted by key_weight
    def loss(p):
      parts = compute_losses(p, model, batch, jax.random.key(0), loss_cfg, 16,
                             test_model.SAMPLER)[1]
      return parts["point_mse"] + parts["velocity"] + key_weight * parts["key_motion"]
    return jax.grad(loss)(p)

  without, with_key = grads(params, 0.0), grads(params, 1.0)
  assert float(optax.tree.norm(without["key_acquisition"])) == 0.0
  assert float(optax.tree.norm(without["key_basis"])) == 0.0
  assert float(optax.tree.norm(without["regressor"])) > 0
  assert float(optax.tree.norm(with_key["key_acquisition"])) > 0
  assert float(optax.tree.norm(with_key["key_basis"])) > 0


def test_batches_carry_key_visemes_and_the_true_motion_at_key_frames(data_cfg):
  corpus = Corpus(data_cfg)
  batcher = Batcher(corpus, "test", 2, data_cfg.bucket_frames, train=False,
                    key_inputs=("key_visemes", "key_motion"))
  batch = next(batcher.epoch(0))
  for r, i in enumerate(batch["seq_index"]):
    seq = batcher.sequences[i]
    t = corpus.num_frames(seq)
    track = corpus.key_visemes(seq)
    np.testing.assert_array_equal(batch["key_visemes"][r, :t], track)
    assert (track == 1).any() and (track > 1).any() and not batch["key_visemes"][r, t:].any()
    at = track > 0
    np.testing.assert_allclose(batch["key_motion"][r, :t][at],
                               corpus.vertices(seq)[at] - corpus.template(seq), atol=1e-7)
    assert not batch["key_motion"][r, :t][~at].any()
    heard = corpus.key_visemes(seq, recognize=True)  # as new speech gets them
    assert heard.shape == track.shape and (heard > 0).any()


def test_lip_closure_is_measured_at_bilabial_frames_only():
  from mmtalker_jax.keymotion.closure import ClosureAccumulator, lip_bands, lip_opening

  # lips: a 3 x 2 grid, upper row at y = +1, lower at y = -1 (x = -1, 0, 1)
  template = np.array([[x, y, 0.0] for y in (1.0, -1.0) for x in (-1.0, 0.0, 1.0)], np.float32)
  upper, lower = lip_bands(template, np.arange(6))
  assert list(upper) == [1] and list(lower) == [4]  # the midline band: x within 0.5
  frames = np.repeat(template[None], 3, 0)
  frames[1, 1, 1] = 0.0  # frame 1: the upper lip comes down to meet... halfway
  np.testing.assert_allclose(lip_opening(frames, upper, lower), [2, 1, 2])
  acc = ClosureAccumulator(upper, lower)
  truth = frames.copy()
  truth[1, 1, 1] = -1.0  # closed
  acc.add(frames, truth, np.array([0, 1, 4]))  # frame 1 bilabial, frame 2 open
  assert acc.result() == pytest.approx(1.0)
  with pytest.raises(ValueError, match="both lips"):
    lip_bands(template[:3], np.arange(3))


def cli(*args):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


@pytest.mark.slow
def test_key_motion_runs_train_resume_evaluate_and_animate_speech(tiny_corpus_root, tmp_path):
  """A predicted key-motion run through the CLIs: trained, resumed, scored with
  the bilabial check, and animating speech it aligns itself; silence animates
  with a note."""
  run = tmp_path / "predicted"
  for steps in (6, 9):
    proc = cli("train.py", "--config", "configs/keymotion.py:predicted@tiny", "--workdir",
               str(run), f"--config.data.root={tiny_corpus_root}",
               f"--config.train.num_steps={steps}", "--config.train.eval_every=6",
               "--config.train.log_every=3",
               # a shallower tiny model: this test is about the plumbing
               "--config.model.audio_levels=1", "--config.model.gcn_blocks=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
  trained = [x for x in lines if "loss" in x]
  assert [x["step"] for x in trained] == [3, 6, 9]  # 7-9 resumed from the step-6 checkpoint
  assert all(x["key_motion"] > 0 for x in trained)

  out = tmp_path / "scores.json"
  proc = cli("evaluate.py", "--ckpt", str(run), "--bilabial", "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "BILAB x1e-3" in proc.stdout
  scores = json.loads(out.read_text())
  assert 0 < scores["model"]["bilabial"] < 0.05 and scores["model"]["lve"] > 0

  wav = os.path.join(tiny_corpus_root, "wav", "SynthTalk_S01_sentence01.wav")
  silent = tmp_path / "silent.wav"
  soundfile.write(silent, np.zeros(24000, np.float32), 16000)
  proc = cli("predict.py", "--ckpt", str(run), "--audio", wav, str(silent),
             "--out_dir", str(tmp_path / "anim"), "--verbose")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "aligning the speech for key motions with pocketsphinx" in proc.stdout
  assert proc.stderr.count("note:") == 1
  assert f"note: {silent}: pocketsphinx found no key frames" in proc.stderr
  anim = np.load(tmp_path / "anim" / "silent.npy")
  assert anim.shape[0] == 45 and np.isfinite(anim).all()


def test_an_oracle_run_refuses_new_speech(tiny_config):
  from mmtalker_jax.errors import InputError
  from mmtalker_jax.inference.predictor import Predictor
  from tests import test_model

  run = types.SimpleNamespace(config=tiny_config, workdir="runs/oracle",
                              model=test_model.small_model(30).clone(key_motion="oracle"))
  with pytest.raises(InputError, match="runs/oracle: an oracle key-motion run reads the true"):
    Predictor(run)
