"""Audio loading and log-mel features aligned exactly to mesh frames."""

import librosa
import numpy as np
import pytest
import soundfile as sf

from mmtalker_jax import alignment
from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax.errors import InputError

PARAMS = dict(sample_rate=16000, feature_rate=100.0, win_length=400, n_fft=512,
              n_mels=80, fmin=40.0, fmax=7600.0)


def click_at(seconds: float, total: float = 3.0, sr: int = 16000) -> np.ndarray:
  x = np.zeros(int(total * sr), np.float32)
  i = int(round(seconds * sr))
  x[i - 16:i + 16] = np.random.default_rng(0).standard_normal(32)
  return x


@pytest.mark.parametrize("fps", [25.0, 30.0])
@pytest.mark.parametrize("feature_rate", [100.0, 120.0, 50.0])
def test_an_audio_event_lands_in_the_mesh_frame_that_covers_it(fps, feature_rate):
  params = dict(PARAMS, feature_rate=feature_rate)
  num_frames = int(3.0 * fps)
  hop = 1 / feature_rate
  for frame in (3, 17, 40, num_frames - 5):
    # Anywhere in the frame at least half a feature hop from its edges.
    for offset in (0.5 * hop + 1e-3, 0.5 / fps, 1 / fps - 0.5 * hop - 1e-3):
      t = frame / fps + offset
      feats = audio_lib.log_mel(click_at(t), num_frames, fps, params)
      loudest = int(np.argmax(feats.max(axis=1)))
      mapped = alignment.feature_to_frame(len(feats), fps, feature_rate)
      assert mapped[loudest] == frame == int(np.floor(t * fps))


@pytest.mark.parametrize("fps,feature_rate", [(30.0, 100.0), (25.0, 100.0), (30.0, 50.0), (24.0, 100.0)])
def test_feature_count_covers_exactly_the_frames(fps, feature_rate):
  for t in (1, 7, 29, 30, 31, 150):
    n = alignment.num_feature_frames(t, fps, feature_rate)
    mapped = alignment.feature_to_frame(n, fps, feature_rate)
    assert mapped.min() >= 0 and mapped.max() == t - 1
    # Every frame gets at least one feature when features are faster than frames.
    if feature_rate >= fps:
      assert set(mapped.tolist()) == set(range(t))
    # Prefix property: T frames' features are the first of T+1 frames'.
    assert alignment.num_feature_frames(t + 1, fps, feature_rate) >= n


def test_crop_stride_keeps_the_mapping_exact():
  for fps, rate in [(30.0, 100.0), (25.0, 100.0), (30.0, 120.0)]:
    s = alignment.crop_stride(fps, rate)
    assert (s * rate / fps) == int(s * rate / fps)
  assert alignment.crop_stride(30.0, 100.0) == 3
  assert alignment.crop_stride(25.0, 100.0) == 1


def test_stereo_44k_is_resampled_and_mixed_down(tmp_path):
  t = np.arange(44100 * 2) / 44100
  left = 0.5 * np.sin(2 * np.pi * 440 * t)
  path = tmp_path / "stereo.wav"
  sf.write(path, np.stack([left, left], 1), 44100)
  audio = audio_lib.load_audio(path, 16000)
  assert audio.ndim == 1 and abs(len(audio) - 32000) <= 1
  spectrum = np.abs(np.fft.rfft(audio))
  assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 2


@pytest.mark.parametrize("content,message", [
    (b"", "audio file is empty"), (b"this is not audio at all" * 50, "not a readable audio file")])
def test_bad_audio_names_the_file(tmp_path, content, message):
  path = tmp_path / "bad.wav"
  path.write_bytes(content)
  with pytest.raises(InputError, match=f"bad.wav: {message}"):
    audio_lib.load_audio(path, 16000)


def test_truncated_wav_is_detected(tmp_path):
  path = tmp_path / "cut.wav"
  sf.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(InputError, match="cut.wav: truncated WAV"):
    audio_lib.load_audio(path, 16000)


def test_cache_returns_the_same_features_and_keys_on_content_and_params(tmp_path):
  path = tmp_path / "a.wav"
  sf.write(path, click_at(1.0), 16000, subtype="FLOAT")
  cache = str(tmp_path / "cache")
  first = audio_lib.cached_features(path, 60, 30.0, PARAMS, cache)
  second = audio_lib.cached_features(path, 60, 30.0, PARAMS, cache)
  np.testing.assert_array_equal(first, second)
  assert len(list((tmp_path / "cache").iterdir())) == 1
  audio_lib.cached_features(path, 60, 30.0, dict(PARAMS, n_mels=40), cache)
  sf.write(path, click_at(2.0), 16000, subtype="FLOAT")  # edited file
  edited = audio_lib.cached_features(path, 60, 30.0, PARAMS, cache)
  assert len(list((tmp_path / "cache").iterdir())) == 3
  assert not np.array_equal(edited, first)


@pytest.mark.parametrize("rate,channels,name,subtype", [
    (44100, 2, "s.wav", "PCM_16"), (22050, 1, "m.flac", "PCM_24"), (48000, 3, "t.wav", "FLOAT"),
    (16000, 1, "n.wav", "PCM_16"), (8000, 1, "o.ogg", "VORBIS")])
def test_audio_reads_exactly_as_librosa_load(tmp_path, rate, channels, name, subtype):
  rng = np.random.default_rng(rate)
  path = tmp_path / name
  sf.write(path, 0.3 * rng.standard_normal((rate + 17, channels)), rate, subtype=subtype)
  ours = audio_lib.load_audio(path, 16000)
  reference, _ = librosa.load(path, sr=16000, mono=True)
  assert ours.dtype == np.float32 and ours.shape == reference.shape
  np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (16000, 512, 80, 0.0, 8000.0), (16000, 400, 128, 20.0, 7600.0), (22050, 2048, 64, 50.0, 9000.0)])
def test_mel_filters_equal_librosa(sr, n_fft, n_mels, fmin, fmax):
  ours = audio_lib._mel_basis(sr, n_fft, n_mels, fmin, fmax)
  reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
  assert ours.shape == (n_mels, n_fft // 2 + 1)
  np.testing.assert_array_equal(ours, reference.astype(np.float32))
