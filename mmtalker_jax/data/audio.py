"""Speech in: loading any audio file and the model's audio input aligned to mesh frames.

The input is one of two kinds (`params['kind']`, a config's data.features):
  'logmel'    [F, n_mels] log-mel frames at feature_rate Hz, for the built-in
              conv encoder. Silence, and anything past the end of the audio,
              reads as the feature floor log(POWER_FLOOR).
  'waveform'  [S, 1] samples (feature_rate = sample_rate), for a pretrained
              speech encoder; normalised per utterance when params['normalize']
              (as its checkpoint's feature extractor does). Padding is 0.
Either way frame j is placed by the rule in `mmtalker_jax.alignment`, so
batching, cropping and padding treat both alike: padding with
`padding_value(params)` is padding with silence.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import warnings
from typing import Any, Mapping

import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.alignment import num_feature_frames
from mmtalker_jax.errors import InputError
from mmtalker_jax.waveform import normalize_waveform


def _wav_shortfall(path: str) -> int:
  """Bytes a RIFF/WAVE file's data chunk declares beyond the end of the file (0 if none)."""
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
      return 0
    size = os.fstat(f.fileno()).st_size
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        return 0
      cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
      if cid == b"data":
        return max(0, f.tell() + length - size)
      f.seek(length + (length & 1), os.SEEK_CUR)


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
  """Reads any file librosa reads, resampled to `sample_rate` and mixed to mono.

  Files libsndfile reads (WAV, FLAC, OGG, MP3, ...) go through `_read_soundfile`,
  which gives librosa.load's samples exactly without importing librosa (about
  1 s of start-up); anything else goes through librosa.load itself.

  Returns:
    [S] float32.

  Raises:
    InputError: naming `path`, for a missing, unreadable, non-audio or empty file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(path, "audio file not found")
  if os.path.getsize(path) == 0:
    raise InputError(path, "audio file is empty (0 bytes)")
  missing = _wav_shortfall(path)
  if missing:
    raise InputError(path, f"truncated WAV: {missing} bytes of audio data are missing")
  try:
    audio = _read_soundfile(path, sample_rate)
  except Exception as e:  # noqa: BLE001 (libsndfile cannot read it: librosa's other backends may)
    audio, first_error = None, e
  if audio is None:
    import librosa  # deferred: its first import takes about a second

    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        audio, _ = librosa.load(path, sr=sample_rate, mono=True)
    except Exception:  # noqa: BLE001 (audioread raises many types, with little to say)
      reason = (str(first_error).splitlines() or [type(first_error).__name__])[0]
      raise InputError(path, f"not a readable audio file ({reason})") from None
  if audio.size == 0:
    raise InputError(path, "audio file holds no samples")
  if not np.all(np.isfinite(audio)):
    raise InputError(path, "audio holds NaN or inf samples")
  return audio.astype(np.float32)


def _read_soundfile(path: str, sample_rate: int) -> np.ndarray:
  """librosa.load(path, sr=sample_rate, mono=True) for files libsndfile reads.

  The same steps in the same float32 arithmetic: read, average the channels,
  resample with soxr at 'soxr_hq', pad or trim to ceil(S x ratio) samples.
  Non-finite samples are returned as they are (the caller rejects them).
  """
  import soundfile as sf
  import soxr

  audio, native = sf.read(path, dtype="float32", always_2d=True)
  audio = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
  if native == sample_rate or audio.size == 0 or not np.all(np.isfinite(audio)):
    return audio
  size = int(np.ceil(audio.shape[0] * float(sample_rate) / native))
  out = soxr.resample(audio, native, sample_rate, quality="soxr_hq")
  out = out[:size] if len(out) >= size else np.pad(out, (0, size - len(out)))
  return np.asarray(out, np.float32)


POWER_FLOOR = 1e-6  # added to mel power before the log


def feature_floor() -> float:
  """The log-mel value of silence (and of padding)."""
  return float(np.log(np.float32(POWER_FLOOR)))


_FEATURE_VERSION = 3  # bump when log_mel's numbers change, to invalidate caches


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
  """[n_mels, n_fft // 2 + 1] Slaney mel filters with Slaney area norm.

  librosa.filters.mel's defaults (htk=False, norm='slaney'), computed here so
  prediction need not import librosa; tests/test_audio.py compares the two.
  """
  fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
  mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
  edges = _mel_to_hz(mels)
  widths = np.diff(edges)
  ramps = edges[:, None] - fft_freqs[None, :]
  lower = -ramps[:-2] / widths[:-1, None]
  upper = ramps[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
  weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # in float32, as librosa does
  return weights


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(hz: float) -> float:
  if hz < _MIN_LOG_HZ:
    return hz / _F_SP
  return _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
  return np.where(mels < _MIN_LOG_MEL, _F_SP * mels,
                  _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)))


def log_mel(audio: np.ndarray, num_frames: int, fps: float,
            params: Mapping[str, Any]) -> np.ndarray:
  """Log-mel features for `num_frames` mesh frames.

  Args:
    audio: [S] float32 at params['sample_rate'].
    num_frames: T, the mesh frames to cover (audio beyond is ignored, audio
      missing at the end reads as silence).
    fps: mesh frame rate.
    params: sample_rate, feature_rate (Hz), win_length, n_fft, n_mels, fmin, fmax.

  Returns:
    [num_feature_frames(T), n_mels] float32 natural-log mel power.
  """
  sr = int(params["sample_rate"])
  win = int(params["win_length"])
  n_fft = int(params["n_fft"])
  n = num_feature_frames(num_frames, fps, float(params["feature_rate"]))
  centres = np.round((np.arange(n) + 0.5) / float(params["feature_rate"]) * sr).astype(np.int64)
  idx = centres[:, None] - win // 2 + np.arange(win)[None, :]
  padded = np.concatenate([np.zeros(win, np.float32), audio.astype(np.float32),
                           np.zeros(win, np.float32)])
  valid = (idx >= 0) & (idx < len(audio))
  frames = np.where(valid, padded[np.clip(idx + win, 0, len(padded) - 1)], 0.0)
  frames = frames.astype(np.float32) * np.hanning(win + 2)[1:-1].astype(np.float32)
  spectrum = np.fft.rfft(frames, n=n_fft, axis=1)  # numpy's: scipy.fft takes 0.2 s to import
  power = spectrum.real ** 2 + spectrum.imag ** 2
  basis = _mel_basis(sr, n_fft, int(params["n_mels"]), float(params["fmin"]),
                     float(params["fmax"]))
  return np.log(power.astype(np.float32) @ basis.T + POWER_FLOOR).astype(np.float32)


def waveform(audio: np.ndarray, num_frames: int, fps: float,
             params: Mapping[str, Any]) -> np.ndarray:
  """The samples of `num_frames` mesh frames: [num_feature_frames(T), 1] float32.

  Args:
    audio: [S] float32 at params['sample_rate'] (= params['feature_rate']).
    num_frames, fps: as in `log_mel`.
    params: sample_rate, feature_rate, normalize (zero mean and unit variance
      over the whole utterance, before it is cut or padded to T).
  """
  rate = float(params["feature_rate"])
  if rate != float(params["sample_rate"]):
    raise ValueError(f"a waveform input has feature_rate = sample_rate, got {rate} and "
                     f"{params['sample_rate']}")
  if params.get("normalize", False):
    audio = normalize_waveform(audio)
  n = num_feature_frames(num_frames, fps, rate)
  out = np.zeros((n, 1), np.float32)
  out[:min(n, len(audio)), 0] = audio[:n]
  return out


def features(audio: np.ndarray, num_frames: int, fps: float,
             params: Mapping[str, Any]) -> np.ndarray:
  """The model's audio input of kind params['kind'] (default 'logmel'): [F, C] float32."""
  kind = params.get("kind", "logmel")
  if kind == "logmel":
    return log_mel(audio, num_frames, fps, params)
  if kind == "waveform":
    return waveform(audio, num_frames, fps, params)
  raise ValueError(f"unknown audio input kind {kind!r} (logmel | waveform)")


def num_channels(params: Mapping[str, Any]) -> int:
  """C of `features`: n_mels, or 1 for a waveform."""
  return 1 if params.get("kind", "logmel") == "waveform" else int(params["n_mels"])


def padding_value(params: Mapping[str, Any]) -> float:
  """The input value of silence: the feature floor, or 0 for a waveform."""
  return 0.0 if params.get("kind", "logmel") == "waveform" else feature_floor()


def cached_features(path: str | os.PathLike, num_frames: int, fps: float,
                    params: Mapping[str, Any], cache_dir: str | None) -> np.ndarray:
  """`features` of an audio file, cached on disk by file content and parameters.

  The cache key hashes the file's bytes, the feature parameters, T and fps, so
  an edited file or a changed parameter never reads a stale entry.
  """
  if not cache_dir:
    return features(load_audio(path, int(params["sample_rate"])), num_frames, fps, params)
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read())
  digest.update(json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True,
                           default=str).encode())
  digest.update(f"{num_frames}@{fps}|v{_FEATURE_VERSION}".encode())
  entry = os.path.join(cache_dir, digest.hexdigest()[:32] + ".npy")
  if os.path.isfile(entry):
    try:
      return np.load(entry)
    except (OSError, ValueError):
      pass  # a damaged entry is recomputed below
  feats = features(load_audio(path, int(params["sample_rate"])), num_frames, fps, params)
  with fileio.atomic_path(entry) as tmp:
    np.save(tmp, feats)
  return feats
