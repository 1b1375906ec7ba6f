"""Key motions, stage one: phone timelines, visemes, key frames, the align CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from mmtalker_jax.data.audio import load_audio
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
