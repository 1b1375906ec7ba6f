"""SynthTalk: deterministic, in the layout, speech-like, with audio-predictable motion."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from mmtalker_jax.data.synthetic import SynthSpec, generate, tree_digest
from mmtalker_jax.data.synthetic import corpus as corpus_module
from mmtalker_jax.data.synthetic import face, motion, phones, speech

SMALL = SynthSpec(num_train_subjects=1, num_unseen_subjects=1, num_sentences=3,
                  vertex_spacing=0.08)


def test_same_seed_gives_identical_files_in_any_process_count(tmp_path):
  generate(tmp_path / "a", SMALL, workers=1)
  generate(tmp_path / "b", SMALL, workers=2)
  assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
  generate(tmp_path / "c", SynthSpec(**{**SMALL.__dict__, "seed": 1}), workers=1)
  assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")



def test_an_interrupted_generation_leaves_no_corpus_behind(tmp_path, monkeypatch):
  out = tmp_path / "synthtalk"
  render = corpus_module._render_take
  calls = []

  def killed_at_the_second_take(*args):
    calls.append(args)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return render(*args)

  monkeypatch.setattr(corpus_module, "_render_take", killed_at_the_second_take)
  with pytest.raises(KeyboardInterrupt):
    generate(out, SMALL, workers=1)
  assert os.listdir(tmp_path / "synthtalk.partial")  # the first take was written there
  assert not os.path.exists(out)  # so the next run does not take it for a corpus
  monkeypatch.setattr(corpus_module, "_render_take", render)
  generate(out, SMALL, workers=1)
  assert sorted(os.listdir(out)) == ["manifest.json", "regions.json", "template.obj",
                                     "templates.pkl", "vertices_npy", "wav"]
  assert len(os.listdir(out / "wav")) == 6
  assert not os.path.exists(tmp_path / "synthtalk.partial")


def test_layout_and_lengths(tiny_corpus_root, tiny_config):
  root = tiny_corpus_root
  manifest = json.load(open(os.path.join(root, "manifest.json")))
  syn = tiny_config.data.synthetic
  n_subjects = syn.num_train_subjects + syn.num_unseen_subjects
  wavs = sorted(os.listdir(os.path.join(root, "wav")))
  assert len(wavs) == n_subjects * syn.num_sentences
  for name in wavs:
    audio, sr = sf.read(os.path.join(root, "wav", name))
    verts = np.load(os.path.join(root, "vertices_npy", name[:-4] + ".npy"))
    assert sr == 16000 and audio.ndim == 1
    assert verts.shape[1] == 3 * manifest["num_vertices"] and verts.dtype == np.float32
    assert syn.min_seconds - 1 / 30 <= len(verts) / 30 <= syn.max_seconds
    assert abs(len(audio) / sr - len(verts) / 30) < 1e-3


def _take(sentence=2, subject=0):
  spec = SynthSpec()
  rng = np.random.default_rng([0, 3, subject, sentence])
  timeline = phones.make_timeline(phones.make_sentence(np.random.default_rng([0, 1, sentence]), 4.0),
                                  rng, 1.0, 2.0, 6.0)
  voice = speech.Voice(f0=120.0, formant_scale=1.0, breath=0.1)
  n = int(round(timeline.duration * spec.sample_rate))
  return timeline, speech.synthesize(timeline, voice, spec.sample_rate, n, rng)


def _segments(timeline, kind):
  return [(s, e) for p, s, e in zip(timeline.phones, timeline.start, timeline.end)
          if phones.PHONES[p].kind == kind and e - s > 0.05]


def test_speech_has_pitch_formants_frication_and_silences():
  timeline, audio = _take()
  sr = 16000
  rms = lambda s, e: float(np.sqrt(np.mean(audio[int(s * sr):int(e * sr)] ** 2)))
  vowels = _segments(timeline, "vowel")
  pauses = _segments(timeline, "pause")
  assert vowels and pauses
  # Pauses are at least 20 dB quieter than vowels.
  assert max(rms(s + 0.02, e - 0.02) for s, e in pauses) < 0.1 * np.median([rms(s, e) for s, e in vowels])
  # Vowels are periodic near the voice's pitch (autocorrelation peak in 60-300 Hz).
  s, e = max(vowels, key=lambda x: x[1] - x[0])
  seg = audio[int(s * sr):int(e * sr)]
  ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
  lag = np.argmax(ac[sr // 300:sr // 60]) + sr // 300
  assert 80 < sr / lag < 200
  # 's' is high-frequency noise: spectral centroid above 3 kHz; vowels' below 2 kHz.
  centroid = lambda x: np.sum(np.abs(np.fft.rfft(x)) * np.fft.rfftfreq(len(x), 1 / sr)) / np.sum(np.abs(np.fft.rfft(x)))
  sil = [(st, en) for p, st, en in zip(timeline.phones, timeline.start, timeline.end)
         if phones.PHONES[p].name in ("s", "sh")]
  if sil:
    st, en = sil[0]
    assert centroid(audio[int(st * sr):int(en * sr)]) > 2500
  assert centroid(seg) < 2000


def test_motion_follows_the_phones():
  timeline, _ = _take()
  fps = 30.0
  coeffs = motion.articulation(timeline, int(timeline.duration * fps), fps)
  field = {name: coeffs[:, i] for i, name in enumerate(face.MOTION_FIELDS)}
  centre_frames = lambda names: [int((s + e) / 2 * fps) for p, s, e in
                                 zip(timeline.phones, timeline.start, timeline.end)
                                 if phones.PHONES[p].name in names]
  open_vowels, bilabials = centre_frames(("a", "ae")), centre_frames(("p", "b", "m"))
  if open_vowels:
    assert np.mean(field["jaw"][open_vowels]) > 0.5
  if bilabials:
    assert np.mean(field["close"][bilabials]) > 0.6
    assert np.mean(field["jaw"][bilabials]) < 0.3
  accents = [int((s + e) / 2 * fps) for s, e, a in zip(timeline.start, timeline.end, timeline.accents) if a]
  assert np.max(field["brow"][accents]) > 0.5
  long_pauses = [int((s + e) / 2 * fps) for p, s, e in zip(timeline.phones, timeline.start, timeline.end)
                 if p == phones.PAUSE and e - s >= 0.15]
  assert long_pauses and np.all(field["blink"][long_pauses] > 0.5)
  # No blink while speaking a vowel.
  assert np.all(field["blink"][centre_frames(("a", "e", "i", "o", "u", "ae"))] < 0.2)


def test_fine_lip_detail_needs_dense_sampling():
  uv, _ = face.make_topology(0.02)
  fields = face.motion_fields(uv, face.mean_shape())
  detail = np.abs(fields[face.MOTION_FIELDS.index("detail"), :, 2])
  lips = face.regions(uv)["lips"]
  # The ripple lives at the lips, and the lips are meshed twice as densely.
  assert detail[lips].mean() > 10 * np.delete(detail, lips).mean()
  area_share = len(lips) / len(uv)
  assert area_share > 0.05
