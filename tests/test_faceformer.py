"""FaceFormer: the official code's numbers (fixtures, no torch), decoding, the harness."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh.assets import build_mesh_assets
from mmtalker_jax.models import faceformer
from mmtalker_jax.models.faceformer import FaceFormer, head_slopes, period_bias
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig
from mmtalker_jax.torch_checkpoint import load_state_dict
from mmtalker_jax.waveform import normalize_waveform
from tests.meshes import disk_mesh

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "faceformer")
LAYOUTS = ("vocaset", "biwi")


def published(layout):
  meta = json.load(open(os.path.join(FIXTURES, f"{layout}.json")))
  ref = np.load(os.path.join(FIXTURES, f"{layout}.npz"))
  model = faceformer.from_pytorch(os.path.join(FIXTURES, f"{layout}.pth"), meta["dataset"],
                                  meta["num_vertices"], meta["num_subjects"],
                                  speech=SpeechConfig.from_dict(meta["speech"]),
                                  period=meta["period"])
  return model, ref


def assert_close(got, want, template):
  """To 1e-4 of the motion's size (the vertices' own size is the template's)."""
  scale = np.abs(want - template).max()
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predict_equals_the_official_predict(layout):
  model, ref = published(layout)
  got = model.predict(ref["wave"], ref["template"], int(ref["subject"]))
  # the official frame count: int(F / 50 * 30) for VOCASET, F // 2 for BIWI
  assert len(got) == {"vocaset": 36, "biwi": 26}[layout]
  assert np.abs(ref["predicted"] - ref["template"]).max() > 0.1  # the fixture moves
  assert_close(got, ref["predicted"], ref["template"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_teacher_forced_forward_equals_the_official_forward(layout):
  published_model, ref = published(layout)
  model = published_model.model.clone(teacher_forcing=True)
  t = len(ref["truth"])
  wave = jnp.asarray(normalize_waveform(ref["wave"]))[None, :, None]
  encoded = model.apply({"params": published_model.params}, wave,
                        jnp.asarray(ref["template"])[None], jnp.array([int(ref["subject"])]),
                        jnp.ones((1, t)), jnp.asarray(ref["truth"])[None], method=model.encode)
  got = np.asarray(encoded["motion"][0]).reshape(t, -1, 3) + ref["template"]
  assert_close(got, ref["teacher_forced"], ref["template"])


def test_a_pth_holds_the_official_keys_as_arrays():
  state = load_state_dict(os.path.join(FIXTURES, "vocaset.pth"))
  assert state["vertice_map.weight"].shape == (16, 90)
  assert state["obj_vector.weight"].shape == (16, 3)
  assert state["transformer_decoder.layers.0.self_attn.in_proj_weight"].shape == (48, 16)
  assert all(v.dtype == np.float32 for v in state.values())


def write_pth(path, obj_pickle: bytes):
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", obj_pickle)
    z.writestr("archive/version", "3\n")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
  marker = tmp_path / "ran"

  class Payload:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  path = tmp_path / "evil.pth"
  write_pth(path, pickle.dumps({"w": Payload()}))
  with pytest.raises(InputError, match=r"evil.pth: unsafe checkpoint: refusing to construct"):
    load_state_dict(path)
  assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a zip archive"),
    (None, "not a state dict"),
])
def test_bad_checkpoints_get_one_line(tmp_path, content, message):
  path = tmp_path / "bad.pth"
  if content is None:
    write_pth(path, pickle.dumps({"w": [1, 2]}))
  else:
    path.write_bytes(content)
  with pytest.raises(InputError, match=message):
    load_state_dict(path)
  with pytest.raises(InputError, match="no such file|not found"):
    load_state_dict(tmp_path / "missing.pth")


def test_sizes_that_do_not_fit_are_named():
  with pytest.raises(InputError, match=r"vertice_map.weight has shape \[16, 90\], expected "
                     r"\[16, 15069\] for 5023 vertices"):
    faceformer.from_pytorch(os.path.join(FIXTURES, "vocaset.pth"), "vocaset", 5023, 3)


def official_biased_mask(num_heads, length, period):
  """The official init_biased_mask, transcribed loop for loop in numpy."""
  slopes = head_slopes(num_heads)
  bias = np.arange(0, length, period).repeat(period) // period
  bias = -bias[::-1]
  alibi = np.zeros((length, length), np.float32)
  for i in range(length):
    alibi[i, :i + 1] = bias[-(i + 1):]
  causal = np.where(np.tril(np.ones((length, length))) == 1, 0.0, -np.inf)
  return causal[None] + slopes[:, None, None] * alibi[None]


def test_period_bias_is_the_official_table_and_extends_past_it():
  assert np.allclose(head_slopes(4), [1 / 4, 1 / 16, 1 / 64, 1 / 256])
  frames = jnp.arange(60)
  got = np.asarray(period_bias(jnp.asarray(head_slopes(4)), frames, frames, 6))
  want = official_biased_mask(4, 60, 6)
  allowed = np.isfinite(want)
  np.testing.assert_allclose(got[allowed], want[allowed], atol=1e-6)
  assert (got[~allowed] <= -1e8).all()
  # frame 1000 (past the official 600-frame table) sees frame 700 at -slope * 300 // 25
  far = np.asarray(period_bias(jnp.asarray(head_slopes(4)), jnp.array([1000]),
                               jnp.array([700, 1001]), 25))
  np.testing.assert_allclose(far[:, 0, 0], -head_slopes(4) * 12)
  assert (far[:, 0, 1] <= -1e8).all()


def small_model(**overrides):
  vertices, faces = disk_mesh(40)
  fields = dict(assets=build_mesh_assets(vertices, faces), num_styles=3, fps=30.0,
                feature_rate=100.0, displacement_scale=1e-3, width=16, num_heads=4, period=5,
                dropout=0.1, teacher_forcing=False, audio_levels=2)
  return FaceFormer(**{**fields, **overrides}), vertices


def perturbed_params(model, inputs):
  params = model.init({"params": jax.random.key(0)}, *inputs)["params"]
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.2 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def inputs(vertices, frames, batch=1, seed=2):
  mel = jax.random.normal(jax.random.key(seed), (batch, frames * 10 // 3, 8))  # 100 Hz
  template = jnp.broadcast_to(jnp.asarray(vertices), (batch, *vertices.shape))
  return mel, template, jnp.arange(batch) % 3, jnp.ones((batch, frames))


def test_padding_frames_changes_nothing_in_the_real_ones():
  model, vertices = small_model()
  mel, template, style, mask = inputs(vertices, 24)
  params = perturbed_params(model, (mel, template, style, mask))
  real, _ = model.apply({"params": params}, mel, template, style, mask)
  padded_mel = jnp.pad(mel, ((0, 0), (0, 40), (0, 0)))
  padded_mask = jnp.pad(mask, ((0, 0), (0, 12)))
  padded, _ = model.apply({"params": params}, padded_mel, template, style, padded_mask)
  assert float(jnp.abs(real).max()) > 1e-3
  np.testing.assert_allclose(padded[:, :24], real, atol=1e-6)
  assert float(jnp.abs(padded[:, 24:]).max()) == 0.0


def test_dropout_only_with_a_dropout_rng_and_gradients_reach_every_weight():
  model, vertices = small_model()
  args = inputs(vertices, 12, batch=2)
  params = perturbed_params(model, args)
  truth = args[1][:, None] + 1e-3 * jax.random.normal(jax.random.key(4), (2, 12, 40, 3))
  plain = model.apply({"params": params}, *args, targets=truth)[0]
  np.testing.assert_array_equal(plain, model.apply({"params": params}, *args, targets=truth)[0])
  dropped = model.apply({"params": params}, *args, targets=truth,
                        rngs={"dropout": jax.random.key(5)})[0]
  assert float(jnp.abs(dropped - plain).max()) > 1e-5

  for teacher_forcing in (True, False):
    m = model.clone(teacher_forcing=teacher_forcing)

    def loss(p):
      out = m.apply({"params": p}, *args, targets=truth, rngs={"dropout": jax.random.key(5)})[0]
      return jnp.mean((out - (truth - args[1][:, None])) ** 2)
    grads = jax.grad(loss)(params)
    norms = {"/".join(k.key for k in path): float(jnp.linalg.norm(g))
             for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
    # One audio state per frame (VOCASET's alignment): the cross-attention's
    # softmax has one entry, so its query cannot matter, as in the official model.
    stuck = sorted(k for k, n in norms.items() if n == 0)
    assert stuck == ["cross_attention_query/bias", "cross_attention_query/kernel"], stuck


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=600):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def seeds_args(base, workdir, root, steps, *extra):
  return ["train.py", "--config", f"configs/seeds.py:{base}", "--workdir", str(workdir),
          "--config.sweep.seeds=0,1", "--config.sweep.group_size=2",
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          "--config.train.eval_every=10", "--config.train.log_every=5", *extra]


@pytest.mark.slow
def test_faceformer_trains_resumes_evaluates_predicts_and_compares(tiny_corpus_root, tmp_path):
  """FaceFormer through train.py (two seeds in one program), stopped and resumed
  (as if never stopped), evaluated beside an MMTalker population with paired
  differences, and predict.py on a minute of speech (1800 frames, three times
  the official code's limit; bench/faceformer.py times 5 minutes)."""
  whole, resumed, mm = tmp_path / "ff", tmp_path / "ff_resumed", tmp_path / "mm"
  ff = "faceformer_synthtalk,tiny"
  # SIGKILLed once its first checkpoint (step 10 of 20) is written, then run again.
  proc = subprocess.Popen([sys.executable, *seeds_args(ff, resumed, tiny_corpus_root, 20)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = resumed / "members" / "faceformer" / "seed_0" / "checkpoints" / "10"
  deadline = time.time() + 300
  while not first.is_dir() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (resumed / "members" / "faceformer" / "seed_0" / "checkpoints" / "20").exists()
  for args in (seeds_args(ff, resumed, tiny_corpus_root, 20),
               seeds_args(ff, whole, tiny_corpus_root, 20),
               # the MMTalker population only needs to exist: a shallow tiny model
               seeds_args("tiny", mm, tiny_corpus_root, 20, "--config.model.audio_levels=1",
                          "--config.model.gcn_blocks=1", "--config.train.eval_every=20")):
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
  for seed in (0, 1):
    log = os.path.join("members", "faceformer", f"seed_{seed}", "metrics.jsonl")
    lines = [json.loads(x) for x in (whole / log).read_text().splitlines()]
    assert (whole / log).read_text() == (resumed / log).read_text()
    losses = [x["loss"] for x in lines if "loss" in x]
    assert len(losses) == 4 and losses[-1] < losses[0]

  out = tmp_path / "compare.json"
  proc = cli("evaluate.py", "--ckpt", str(mm), "--ckpt", str(whole), "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["reference"] == "mmtalker"
  assert sorted(result["members"]) == ["faceformer", "mmtalker"]
  assert result["members"]["faceformer"]["settings"]["model"] == "faceformer"
  diff = result["differences"]["faceformer"]["lve"]
  per_seed = {s: result["members"]["faceformer"]["seeds"][s]["lve"]
              - result["members"]["mmtalker"]["seeds"][s]["lve"] for s in ("0", "1")}
  assert diff["mean"] == pytest.approx(np.mean(list(per_seed.values())), rel=1e-6)
  assert diff["ci95"][0] < diff["mean"] < diff["ci95"][1]
  # the same member name twice is refused, naming the second workdir
  proc = cli("evaluate.py", "--ckpt", str(whole), "--ckpt", str(resumed))
  assert proc.returncode != 0 and f"{resumed}: member 'faceformer' is also in" in proc.stderr

  speech = tmp_path / "long.wav"
  wav = os.path.join(tiny_corpus_root, "wav", sorted(os.listdir(
      os.path.join(tiny_corpus_root, "wav")))[0])
  clip, rate = soundfile.read(wav)
  soundfile.write(speech, np.tile(clip, int(np.ceil(60 * rate / len(clip))))[:60 * rate], rate)
  pred = tmp_path / "long.npy"
  run = whole / "members" / "faceformer" / "seed_0"
  proc = cli("predict.py", "--ckpt", str(run), "--audio", str(speech), "--out", str(pred))
  assert proc.returncode == 0, proc.stderr[-3000:]
  frames = np.load(pred)
  assert frames.shape[0] == 1800 and np.isfinite(frames).all()
  # Neither frozen nor blown up at the end: the last 10 s move as much as the
  # first 10 s (the same clip, repeated), within a factor of 2.
  motion = frames - frames.mean(axis=0)
  first, last = np.abs(motion[:300]).mean(), np.abs(motion[-300:]).mean()
  assert first > 0 and 0.5 < last / first < 2.0, (first, last)


PUBLISHED_CONFIG = '''
import json, sys
sys.path.insert(0, {root!r})
from configs import multiface
from configs.faceformer_vocaset import use_published_faceformer
import ml_collections

def get_config():
  meta = json.load(open({meta!r}))
  config = multiface.get_config()
  config.data.root = {corpus!r}
  config.data.num_vertices = meta["num_vertices"]
  config.data.splits.train.subjects = ["01", "02", "03"][:meta["num_subjects"]]
  use_published_faceformer(config, meta["width"], meta["period"], "interpolate")
  config.model.speech_architecture = ml_collections.ConfigDict(meta["speech"])
  return config
'''


def test_a_released_pth_is_scored_and_animates_through_the_clis(tmp_path):
  """evaluate.py and predict.py on a .pth with its config and mesh (the
  VOCASET fixture on a 30-vertex corpus in the Multiface layout)."""
  from tests.test_check import _multiface_layout

  corpus = str(tmp_path / "corpus")
  _multiface_layout(corpus, 30)
  config = tmp_path / "published.py"
  config.write_text(PUBLISHED_CONFIG.format(root=ROOT, corpus=corpus,
                                            meta=os.path.join(FIXTURES, "vocaset.json")))
  pth = os.path.join(FIXTURES, "vocaset.pth")
  proc = cli("evaluate.py", "--ckpt", pth, "--config", str(config), "--out",
             str(tmp_path / "r.json"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "r.json").read_text())
  assert result["sequences"] == 13
  model, static = result["model"], result["static_template"]
  assert np.isfinite(model["lve"]) and model["mve"] != static["mve"]

  wav = os.path.join(corpus, "wav", "01_46.wav")
  out = tmp_path / "anim.npy"
  proc = cli("predict.py", "--ckpt", pth, "--config", str(config), "--template",
             os.path.join(corpus, "face_template.obj"), "--audio", wav, "--style", "03",
             "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert np.load(out).shape == (15, 30, 3)
  proc = cli("predict.py", "--ckpt", pth, "--audio", wav, "--out", str(out))
  assert proc.returncode == 2
  assert proc.stderr.strip() == (f"error: {pth}: a PyTorch checkpoint needs its FaceFormer "
                                 "config: --config configs/faceformer_vocaset.py or "
                                 "configs/faceformer_biwi.py")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_padding_the_waveform_changes_nothing_in_the_real_frames(layout):
  """wav2vec 2.0 front end: a row padded with silence (and masked) into a longer
  bucket gives its real frames as alone: audio is resampled from its real length."""
  published_model, ref = published(layout)
  model = published_model.model
  fps = model.fps
  t = int(len(ref["wave"]) * fps / 16000)
  wave = normalize_waveform(ref["wave"][:int(t * 16000 / fps)])
  pad_frames = 7

  def motion(w, frames):
    return model.apply({"params": published_model.params}, jnp.asarray(w)[None, :, None], None,
                       jnp.array([0]), frames, method=model.encode)["motion"][0]
  alone = motion(wave, jnp.ones((1, t)))
  padded_wave = np.pad(wave, (0, int(pad_frames * 16000 / fps)))
  padded = motion(padded_wave, jnp.pad(jnp.ones((1, t)), ((0, 0), (0, pad_frames))))
  np.testing.assert_allclose(padded[:t], alone, atol=1e-5 * float(jnp.abs(alone).max()))
