"""The dataset doctor reports every planted problem, naming the file."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mmtalker_jax.data import check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(root, capsys, config=None):
  argv = [root] + (["--config", config] if config else [])
  code = check.main(argv)
  out = capsys.readouterr()
  return code, out.out, out.err


def first(root, folder):
  return sorted(os.listdir(os.path.join(root, folder)))[0]


def test_clean_corpus_passes_with_summary(tiny_corpus_root, capsys):
  code, out, _ = run_check(tiny_corpus_root, capsys)
  assert code == 0
  assert "ok: no problems found" in out and "split      train" in out


def test_clean_corpus_passes_with_its_config(tiny_corpus_root, capsys):
  code, out, _ = run_check(tiny_corpus_root, capsys, os.path.join(ROOT, "configs/tiny.py"))
  assert code == 0, out


def _plant_wav_without_npy(root):
  name = first(root, "vertices_npy")
  os.remove(os.path.join(root, "vertices_npy", name))
  return f"wav/{name[:-4]}.wav: has no vertices"


def _plant_npy_without_wav(root):
  name = first(root, "wav")
  os.remove(os.path.join(root, "wav", name))
  return f"vertices_npy/{name[:-4]}.npy: has no audio"


def _plant_wrong_width(root):
  name = first(root, "vertices_npy")
  path = os.path.join(root, "vertices_npy", name)
  np.save(path, np.load(path)[:, :-3])
  return f"{name}: shape"


def _plant_nan_vertices(root):
  name = first(root, "vertices_npy")
  path = os.path.join(root, "vertices_npy", name)
  v = np.load(path)
  v[2, 5] = np.nan
  np.save(path, v)
  return f"{name}: vertices hold NaN or inf"


def _plant_nan_template(root):
  path = os.path.join(root, "templates.pkl")
  t = pickle.load(open(path, "rb"))
  t[sorted(t)[0]][0, 0] = np.inf
  open(path, "wb").write(pickle.dumps(t))
  return "templates.pkl: template of subject 'SynthTalk_S01' holds NaN or inf"


def _plant_empty_wav(root):
  name = first(root, "wav")
  open(os.path.join(root, "wav", name), "wb").close()
  return f"{name}: audio file is empty"


def _plant_truncated_wav(root):
  path = os.path.join(root, "wav", first(root, "wav"))
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 3])
  return f"{os.path.basename(path)}: truncated WAV"


def _plant_non_audio_wav(root):
  path = os.path.join(root, "wav", first(root, "wav"))
  open(path, "w").write("<html>not audio</html>" * 100)
  return f"{os.path.basename(path)}: not a readable audio file"


def _plant_missing_subject(root):
  path = os.path.join(root, "templates.pkl")
  t = pickle.load(open(path, "rb"))
  del t["SynthTalk_S02"]
  open(path, "wb").write(pickle.dumps(t))
  return "templates.pkl: subject 'SynthTalk_S02' has sequences but no template"


class _Evil:
  def __reduce__(self):
    return (os.system, ("touch /tmp/mmtalker_pwned",))


def _plant_malicious_pickle(root):
  open(os.path.join(root, "templates.pkl"), "wb").write(pickle.dumps({"SynthTalk_S01": _Evil()}))
  return "templates.pkl: unsafe pickle: refusing to construct"


def _plant_region_out_of_range(root):
  import json
  path = os.path.join(root, "regions.json")
  regions = json.load(open(path))
  regions["lips"].append(10 ** 6)
  json.dump(regions, open(path, "w"))
  return "regions.json: region 'lips' index 1000000 is out of range"


PLANTS = [_plant_wav_without_npy, _plant_npy_without_wav, _plant_wrong_width,
          _plant_nan_vertices, _plant_nan_template, _plant_empty_wav, _plant_truncated_wav,
          _plant_non_audio_wav, _plant_missing_subject, _plant_malicious_pickle,
          _plant_region_out_of_range]


@pytest.mark.parametrize("plant", PLANTS, ids=lambda f: f.__name__[7:])
def test_each_planted_problem_is_reported_on_one_line(corpus_copy, capsys, plant):
  expected = plant(corpus_copy)
  code, out, err = run_check(corpus_copy, capsys)
  assert code == 1
  lines = out.strip().splitlines()
  assert any(expected in line and line.startswith(corpus_copy) for line in lines), out
  assert "problem(s) found" in err
  assert not os.path.exists("/tmp/mmtalker_pwned")


def test_44k_stereo_wav_is_not_a_problem(corpus_copy, capsys):
  path = os.path.join(corpus_copy, "wav", first(corpus_copy, "wav"))
  audio, sr = sf.read(path)
  t_old = np.arange(len(audio)) / sr
  t_new = np.arange(int(len(audio) / sr * 44100)) / 44100
  resampled = np.interp(t_new, t_old, audio)
  sf.write(path, np.stack([resampled, resampled], 1), 44100)
  code, out, _ = run_check(corpus_copy, capsys)
  assert code == 0, out


def test_cli_exits_nonzero_without_traceback(corpus_copy):
  _plant_wrong_width(corpus_copy)
  proc = subprocess.run([sys.executable, "-m", "mmtalker_jax.data.check", corpus_copy],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr + proc.stdout
  proc = subprocess.run([sys.executable, "-m", "mmtalker_jax.data.check", "/nonexistent/corpus"],
                        capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 2
  assert proc.stderr.strip() == "error: /nonexistent/corpus: corpus folder not found"


def _multiface_layout(root, num_vertices):
  """A small corpus in the Multiface layout: 13 subjects, sentences 1, 41 and 46 (one per
  split), half a second each, a template of `num_vertices` vertices and the two weight
  masks. Returns the (lips, upper face) vertex counts the masks select."""
  from mmtalker_jax.mesh.io import write_obj
  from tests.meshes import disk_mesh

  verts, faces = disk_mesh(num_vertices)
  os.makedirs(os.path.join(root, "wav"))
  os.makedirs(os.path.join(root, "vertices_npy"))
  write_obj(os.path.join(root, "face_template.obj"), verts, faces)
  mouth = np.clip(1.0 - np.hypot(verts[:, 0], verts[:, 1] + 0.4) / 0.3, 0.0, 1.0)
  forehead = np.clip((verts[:, 1] - 0.3) / 0.5, 0.0, 1.0)
  np.savetxt(os.path.join(root, "weighted_mouth_mask.txt"), mouth, fmt="%.4f")
  np.savetxt(os.path.join(root, "forehead_mask.txt"), forehead, fmt="%.4f")
  rng = np.random.default_rng(0)
  subjects = [f"{i:02d}" for i in range(1, 14)]
  with open(os.path.join(root, "templates.pkl"), "wb") as f:
    pickle.dump({s: verts for s in subjects}, f)
  for s in subjects:
    for sentence in (1, 41, 46):
      stem = f"{s}_{sentence:02d}"
      frames = verts[None] + 1e-3 * rng.standard_normal((15, num_vertices, 3))
      np.save(os.path.join(root, "vertices_npy", stem + ".npy"),
              frames.reshape(15, -1).astype(np.float32))
      sf.write(os.path.join(root, "wav", stem + ".wav"),
               (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
  return int(np.sum(mouth > 0.1)), int(np.sum(forehead > 0.4))


def test_a_multiface_layout_corpus_passes_with_its_config(tmp_path, capsys):
  root = str(tmp_path / "multiface")
  lips, upper = _multiface_layout(root, 6172)
  code, out, err = run_check(root, capsys, os.path.join(ROOT, "configs/multiface.py"))
  assert code == 0, out + err
  assert "mesh       6172 vertices" in out
  assert f"regions    lips {lips}, upper_face {upper}" in out and 0 < lips < upper
  assert "split      test      13 sequences" in out


def test_a_template_of_another_size_than_the_config_states_is_one_line(tmp_path, capsys):
  root = str(tmp_path / "multiface")
  _multiface_layout(root, 6000)
  code, out, err = run_check(root, capsys, os.path.join(ROOT, "configs/multiface.py"))
  assert code == 1
  assert out.strip().splitlines() == [
      f"{root}/face_template.obj: has 6000 vertices, but the config expects 6172 "
      "(data.num_vertices): a different template than the config describes"]
  assert err.strip() == f"1 problem(s) found in {root}"


def test_the_preview_draws_any_corpus_its_config_describes(tmp_path, tiny_corpus_root):
  from PIL import Image

  from mmtalker_jax.viz.preview import write_corpus_preview

  root = str(tmp_path / "multiface")
  _multiface_layout(root, 6172)
  for corpus, config in ((root, os.path.join(ROOT, "configs/multiface.py")),
                         (tiny_corpus_root, None)):
    path = write_corpus_preview(corpus, str(tmp_path / "p.png"), config=config)
    image = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert image.shape == (384, 768, 3)
    left = image[:, :384]
    # The regions are painted: lips red, so some pixels are far redder than grey.
    assert ((left[..., 0] - left[..., 2]) > 80).sum() > 50
