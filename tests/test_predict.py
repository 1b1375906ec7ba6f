"""predict.py and pictures: frame counts, OBJ/MP4 outputs, subdivision, renders, bad input."""

import json
import os
import re
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import trimesh

from mmtalker_jax.errors import InputError
from mmtalker_jax.inference.batch import audio_files, output_paths
from mmtalker_jax.inference.predictor import Predictor, num_frames_for
from mmtalker_jax.inference.subdivide import subdivide
from mmtalker_jax.mesh.assets import build_mesh_assets
from mmtalker_jax.mesh.io import read_mesh
from mmtalker_jax.training.restore import restore
from mmtalker_jax.viz import raster
from tests.meshes import disk_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=300):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(trained_run):
  return trained_run


@pytest.fixture(scope="module")
def speech(tiny_corpus_root):
  wav = sorted(os.listdir(os.path.join(tiny_corpus_root, "wav")))[0]
  return os.path.join(tiny_corpus_root, "wav", wav)


def test_frame_count_is_duration_times_fps_rounded_half_up():
  assert num_frames_for(16000, 16000, 30.0) == 30
  assert num_frames_for(16000 + 266, 16000, 30.0) == 30   # 30.4975 frames
  assert num_frames_for(16000 + 267, 16000, 30.0) == 31   # 30.5006 frames
  assert num_frames_for(16000, 16000, 25.0) == 25
  with pytest.raises(ValueError, match="shorter than one frame"):
    num_frames_for(500, 16000, 30.0)


def test_subdivision_keeps_vertices_and_puts_new_ones_on_the_surface():
  verts, faces = disk_mesh(80)
  sub = subdivide(faces, 2)
  assert len(sub.faces) == 16 * len(faces)
  edges = len(np.unique(np.sort(np.concatenate([faces[:, :2], faces[:, 1:], faces[:, ::2]]), 1), axis=0))
  assert len(sub.face_ids) == 80 + edges + (edges * 2 + 3 * len(faces))  # V + E, then V' + E'
  pos = np.einsum("kj,kjc->kc", sub.bary, verts[faces[sub.face_ids]])
  np.testing.assert_allclose(pos[:80], verts, atol=1e-6)
  # The subdivided surface is the same surface: its area is unchanged.
  area = lambda v, f: trimesh.Trimesh(v, f, process=False).area
  assert area(pos, sub.faces) == pytest.approx(area(verts, faces), rel=1e-5)
  assert (sub.bary >= -1e-7).all() and np.allclose(sub.bary.sum(1), 1)
  # Vertices are placed through their lowest base face, as vertex_points does, so
  # seam vertices keep one island's UV at every level.
  face_ids, bary = build_mesh_assets(verts, faces).vertex_points()
  for level in (0, 2):
    np.testing.assert_array_equal(subdivide(faces, level).face_ids[:80], face_ids)
    np.testing.assert_array_equal(subdivide(faces, level).bary[:80], bary)


def test_predict_writes_npy_objs_and_video_with_sound(run_dir, speech, tmp_path):
  out, objs, mp4 = tmp_path / "a.npy", tmp_path / "objs", tmp_path / "a.mp4"
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--out", str(out),
             "--obj-dir", str(objs), "--video", str(mp4), "--style", "SynthTalk_S02")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "fork" not in proc.stderr, proc.stderr  # ffmpeg starts without forking JAX's threads
  audio, sr = sf.read(speech)
  frames = np.load(out)
  t = num_frames_for(len(audio), sr, 30.0)
  restored = restore(str(run_dir))
  assets = restored.model.assets
  assert frames.shape == (t, assets.num_vertices, 3) and np.isfinite(frames).all()
  names = sorted(os.listdir(objs))
  assert len(names) == t
  mesh = trimesh.load(objs / names[3], process=False, maintain_order=True)
  np.testing.assert_array_equal(mesh.faces, assets.faces)
  np.testing.assert_allclose(mesh.vertices, frames[3], atol=1e-5)
  # Seams and all: every corner's UV is the template's.
  np.testing.assert_allclose(read_mesh(objs / names[3]).face_uv, assets.face_uv, atol=1e-5)
  n_video, _ = imageio_ffmpeg.count_frames_and_secs(str(mp4))
  assert n_video == t
  probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(mp4)],
                         capture_output=True, text=True)
  assert "Audio:" in probe.stderr and "Video:" in probe.stderr


def test_subdivided_output_agrees_with_base_at_original_vertices(run_dir, speech, tmp_path):
  base, fine = tmp_path / "base.npy", tmp_path / "fine.npy"
  assert cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--out", str(base)).returncode == 0
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--out", str(fine),
             "--subdivide", "1")
  assert proc.returncode == 0, proc.stderr[-2000:]
  a, b = np.load(base), np.load(fine)
  faces = restore(str(run_dir)).model.assets.faces
  assert b.shape[1] == len(subdivide(faces, 1).face_ids) > a.shape[1]
  np.testing.assert_allclose(b[:, :a.shape[1]], a, atol=1e-6)


def test_long_audio_is_linear_and_chunking_leaves_no_seam(run_dir, speech):
  restored = restore(str(run_dir))
  audio, _ = sf.read(speech, dtype="float32")
  long = np.tile(audio, 20)  # ~30 s
  small = Predictor(restored, chunk_mib=0.5, length_bucket=64)
  large = Predictor(restored, chunk_mib=64, length_bucket=64)
  v = restored.model.assets.num_vertices
  assert small.decoder.chunk_frames(1, v) < 64 < large.decoder.chunk_frames(1, v)
  frames = large.animate(long)
  np.testing.assert_allclose(small.animate(long), frames, atol=1e-6)
  assert len(frames) == num_frames_for(len(long), 16000, 30.0)


def test_silence_keeps_the_mouth_still_and_speech_moves_it(run_dir, speech):
  restored = restore(str(run_dir))
  predictor = Predictor(restored)
  template = predictor.template("SynthTalk_S01")
  lips = restored.model.assets.regions["lips"]
  audio, _ = sf.read(speech, dtype="float32")

  def lip_motion(frames):  # per frame, the largest lip displacement from neutral
    return np.linalg.norm(frames - template, axis=-1)[:, lips].max(axis=1)

  still = lip_motion(predictor.animate(np.zeros_like(audio), "SynthTalk_S01"))
  moving = lip_motion(predictor.animate(audio, "SynthTalk_S01"))
  # Silence (after 20 training steps): the lips stay within 2 mm of neutral and
  # hardly vary; the same length of speech moves them several times as much,
  # and varies over time.
  assert still.max() < 2e-3, still.max()
  assert moving.max() > 3 * still.max() and moving.std() > 3 * still.std(), (
      moving.max(), still.max(), moving.std(), still.std())


def test_evaluate_save_pred_equals_predict_on_the_same_wav(run_dir, tiny_corpus_root, tmp_path):
  proc = cli("evaluate.py", "--ckpt", str(run_dir), "--split", "val", "--save-pred",
             str(tmp_path / "pred"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  name = sorted(os.listdir(tmp_path / "pred"))[-1]
  stem, style = name[:-len(".npy")].split("_condition_")
  out = tmp_path / "predict.npy"
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio",
             os.path.join(tiny_corpus_root, "wav", stem + ".wav"), "--style", style,
             "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-2000:]
  predicted = np.load(out)
  evaluated = np.load(tmp_path / "pred" / name).reshape(predicted.shape)
  template = Predictor(restore(str(run_dir))).template(style)
  motion = np.abs(evaluated - template).max()
  assert motion > 1e-4
  # One decode path: batched, bucketed evaluation and single-file prediction agree.
  np.testing.assert_allclose(predicted, evaluated, atol=1e-4 * motion)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"definitely not audio" * 40), "not a readable audio file"),
    (lambda p: sf.write(p, np.zeros(100, np.float32), 16000), "shorter than one frame"),
])
def test_bad_audio_is_one_line_and_writes_nothing(run_dir, tmp_path, make, message):
  bad = tmp_path / "bad.wav"
  make(bad)
  out = tmp_path / "out.npy"
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", str(bad), "--out", str(out),
             "--video", str(tmp_path / "v.mp4"))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert message in proc.stderr and "bad.wav" in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["bad.wav"]


def test_unknown_style_lists_the_known_ones(run_dir, speech, tmp_path):
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--style", "Nobody",
             "--out", str(tmp_path / "x.npy"))
  assert proc.returncode == 2
  assert "unknown style 'Nobody'; known styles: SynthTalk_S01, SynthTalk_S02" in proc.stderr
  assert not (tmp_path / "x.npy").exists()


def test_unwritable_output_fails_before_any_work(run_dir, speech, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech,
             "--out", str(blocker / "sub" / "a.npy"))
  assert proc.returncode == 2 and "cannot write here" in proc.stderr


def test_render_shows_the_face_where_it_is():
  verts, faces = disk_mesh(200)
  image = raster.render(verts, faces, size=64)
  assert image.shape == (64, 64, 3)
  # The disk fills the middle and leaves the corners white.
  assert (image[32, 32] < 250).all() and (image[0, 0] == 255).all()
  shifted = raster.render(verts, faces, size=64, bounds=(verts.min(0) - [0.5, 0, 0],
                                                        verts.max(0) + [0.5, 0, 0]))
  assert (shifted != image).any()


def test_density_and_curves_pictures(run_dir, tmp_path):
  png = tmp_path / "density.png"
  proc = cli("-m", "mmtalker_jax.viz.density", "--ckpt", str(run_dir), "--out", str(png))
  assert proc.returncode == 0, proc.stderr[-2000:]
  from PIL import Image
  image = np.asarray(Image.open(png))
  assert image.shape == (512, 1024, 3) and image.std() > 10
  curves = tmp_path / "curves.png"
  proc = cli("-m", "mmtalker_jax.viz.curves", "--workdir", str(run_dir), "--out", str(curves))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert Image.open(curves).size[0] > 500


def test_evaluate_renders_comparisons(run_dir, tmp_path):
  proc = cli("evaluate.py", "--ckpt", str(run_dir), "--split", "val", "--render", str(tmp_path / "r"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  videos = sorted(os.listdir(tmp_path / "r"))
  assert len(videos) == 2 and all(v.endswith(".mp4") for v in videos)
  n, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "r" / videos[0]))
  assert n > 10


def test_evaluate_long_joins_sentences_and_compares_with_per_sentence(run_dir, tmp_path):
  out = tmp_path / "long.json"
  proc = cli("evaluate.py", "--ckpt", str(run_dir), "--split", "val", "--long", "6",
             "--out", str(out), "--save-pred", str(tmp_path / "pred"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "joined into 6 s sequences" in proc.stdout and "model per sentence" in proc.stdout
  result = json.loads(out.read_text())
  assert result["long_seconds"] == 6 and result["sequences"] == 2  # one per val subject
  for row in ("model", "model_per_sentence", "static_template", "mean_motion"):
    assert np.isfinite(result[row]["lve"]) and result[row]["lve"] > 0
  # Same frames in both model rows, so the baselines are those of the joined truth.
  preds = sorted(os.listdir(tmp_path / "pred"))
  assert preds == ["SynthTalk_S01_long01_condition_SynthTalk_S01.npy",
                   "SynthTalk_S02_long01_condition_SynthTalk_S02.npy"]
  assert np.load(tmp_path / "pred" / preds[0]).shape[0] >= 6 * 30


def test_a_folder_with_a_corrupt_file_yields_the_others_and_the_next_call_compiles_nothing(
    run_dir, speech, tmp_path):
  folder, out, cache = tmp_path / "in", tmp_path / "out", tmp_path / "xla"
  folder.mkdir()
  audio, sr = sf.read(speech, dtype="float32")
  sf.write(folder / "a.wav", audio, sr, subtype="FLOAT")
  sf.write(folder / "b.flac", audio[: len(audio) // 2], sr)
  (folder / "c.wav").write_bytes(b"this is not audio" * 40)
  (folder / "notes.txt").write_text("not an audio file: ignored")
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio_dir", str(folder), "--out_dir",
             str(out), "--compile_cache", str(cache), "--verbose")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"error: {folder / 'c.wav'}: not a readable audio file (Error opening "
      f"'{folder / 'c.wav'}': Format not recognised.)"]
  assert sorted(os.listdir(out)) == ["a.npy", "b.npy"]  # nothing of c.wav
  assert "2 of 3 files animated" in proc.stdout and "1 failed" in proc.stdout
  fps = json.loads((run_dir / "config.json").read_text())["data"]["fps"]
  for name, n in (("a", len(audio)), ("b", len(audio) // 2)):
    frames = np.load(out / f"{name}.npy")
    assert frames.shape == (num_frames_for(n, sr, fps), 288, 3) and np.isfinite(frames).all()
  first = compiled_and_loaded(proc.stdout)
  assert first[0] >= 3 and first[1] == 0 and os.listdir(cache)

  again = tmp_path / "again.npy"
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", str(folder / "a.wav"), "--out",
             str(again), "--compile_cache", str(cache), "--verbose")
  assert proc.returncode == 0, proc.stderr[-2000:]
  second = compiled_and_loaded(proc.stdout)
  assert second[0] == 0 and second[1] >= 3  # every program came from the cache
  np.testing.assert_array_equal(np.load(again), np.load(out / "a.npy"))


class _Payload:
  """Unpickled, it writes a file: the proof that something turned an entry into code."""

  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_entries_planted_in_the_cache_folder_are_never_unpickled(run_dir, speech, tmp_path):
  import pickle

  cache, first, again = tmp_path / "xla", tmp_path / "first.npy", tmp_path / "again.npy"
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--out", str(first),
             "--compile_cache", str(cache))
  assert proc.returncode == 0, proc.stderr[-2000:]
  marker = tmp_path / "pwned"
  payload = pickle.dumps(_Payload(str(marker)))
  entries = [p for p in cache.rglob("*") if p.is_file()]
  assert entries
  for path in entries:  # every entry JAX wrote, and names an executable store would read
    path.write_bytes(payload)
  for name in ("encode", "points", "frames"):
    (cache / f"mmtalker-exec-{name}-{'0' * 40}.bin").write_bytes(payload)
  proc = cli("predict.py", "--ckpt", str(run_dir), "--audio", speech, "--out", str(again),
             "--compile_cache", str(cache))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert not marker.exists()
  np.testing.assert_array_equal(np.load(again), np.load(first))


def compiled_and_loaded(stdout: str) -> tuple[int, int]:
  m = re.search(r"\((\d+) programs compiled, (\d+) loaded from the cache\)", stdout)
  assert m, stdout
  return int(m.group(1)), int(m.group(2))


def test_batch_outputs_are_named_after_inputs_and_collisions_are_refused(tmp_path):
  paths = output_paths(["x/a.wav", "y/b.flac"], "OUT", ("npy", "mp4", "obj"))
  assert paths == [{"npy": "OUT/a.npy", "mp4": "OUT/a.mp4", "obj": "OUT/a_obj"},
                   {"npy": "OUT/b.npy", "mp4": "OUT/b.mp4", "obj": "OUT/b_obj"}]
  with pytest.raises(InputError, match="y/a.flac: has the same name as x/a.wav"):
    output_paths(["x/a.wav", "y/a.flac"], "OUT", ("npy",))
  with pytest.raises(InputError, match="unknown output format"):
    output_paths(["x/a.wav"], "OUT", ("gif",))
  (tmp_path / "z.WAV").write_bytes(b"")
  (tmp_path / "readme.md").write_text("")
  assert audio_files(str(tmp_path)) == [str(tmp_path / "z.WAV")]
  (tmp_path / "empty").mkdir()
  with pytest.raises(InputError, match="empty: holds no audio files"):
    audio_files(str(tmp_path / "empty"))


@pytest.mark.parametrize("chunk", [0, 7])
def test_the_training_loss_sees_at_every_vertex_what_the_predictor_outputs(run_dir, speech, chunk):
  """The all-vertex loss, with Predictor's output as its target, is zero (and is not
  for a target 1e-3 output units away): training and prediction run one forward."""
  import jax

  from mmtalker_jax.models.sampler import sampler_settings
  from mmtalker_jax.training.step import compute_losses

  run = restore(str(run_dir))
  predictor = Predictor(run)
  audio, _ = sf.read(speech, dtype="float32")
  style = predictor.styles[-1]
  template = predictor.template(style) + 1e-3  # not the subject's own neutral face
  inputs, t = predictor.inputs(audio, style, template)
  predicted = predictor.animate(audio, style, template=template)  # [T,V,3]
  vertices = np.repeat(inputs["template"][:, None], inputs["frame_mask"].shape[1], 1)
  vertices[0, :t] = predicted
  config = run.config
  loss_cfg = config.loss.copy_and_resolve_references()
  loss_cfg.vertex_chunk_frames = chunk

  def vertex_mse(target):
    _, parts = jax.jit(lambda p, b: compute_losses(
        p, run.model, b, jax.random.key(0), loss_cfg, int(config.sampler.num_points),
        sampler_settings(config.sampler), with_vertex_loss=True))(
            run.params, {**inputs, "vertices": target})
    return float(parts["vertex_mse"])

  unit = float(config.data.displacement_scale)
  shifted = vertices.copy()
  shifted[0, :t] += 1e-3 * unit
  assert vertex_mse(vertices) < 1e-10
  np.testing.assert_allclose(vertex_mse(shifted), 3e-6, rtol=1e-2)  # float32 positions
