"""Source-filter speech synthesis for SynthTalk.

Voiced sound is a glottal pulse train with a pitch contour (declination,
accents on stressed vowels) through a cascade of time-varying formant
resonators whose targets glide between phones (coarticulation). Fricatives are
band-passed noise, stops a closure followed by a burst, nasals a low murmur,
pauses silence.
"""

from __future__ import annotations

from typing import NamedTuple

import functools

import numba
import numpy as np
import scipy.ndimage
import scipy.signal

from mmtalker_jax.data.synthetic import phones as ph


class Voice(NamedTuple):
  """A subject's voice: mean pitch (Hz), formant scale (vocal tract length), breathiness."""
  f0: float
  formant_scale: float
  breath: float


@numba.njit(cache=True)
def _resonate(x, freq, bandwidth, sample_rate):  # pragma: no cover - numba
  """Time-varying two-pole resonator with unit gain at DC."""
  y = np.zeros_like(x)
  y1 = 0.0
  y2 = 0.0
  for n in range(x.shape[0]):
    r = np.exp(-np.pi * bandwidth[n] / sample_rate)
    c = -r * r
    b = 2.0 * r * np.cos(2.0 * np.pi * freq[n] / sample_rate)
    a = 1.0 - b - c
    out = a * x[n] + b * y1 + c * y2
    y2 = y1
    y1 = out
    y[n] = out
  return y


_CONTROL_RATE = 1000  # control signals (pitch, formants, gains) are made at 1 kHz


def _control(signal: np.ndarray, sigma_seconds: float, t: np.ndarray) -> np.ndarray:
  """Smooths a control-rate signal [..., n] and interpolates it at sample times t."""
  smooth = scipy.ndimage.gaussian_filter1d(signal, sigma_seconds * _CONTROL_RATE, mode="nearest")
  grid = np.arange(signal.shape[-1]) / _CONTROL_RATE
  if smooth.ndim == 1:
    return np.interp(t, grid, smooth)
  return np.stack([np.interp(t, grid, row) for row in smooth])


@functools.lru_cache(maxsize=None)
def _band_pass(low: float, high: float, sample_rate: int) -> np.ndarray:
  return scipy.signal.butter(4, [low, min(high, 0.45 * sample_rate)], "bandpass",
                             fs=sample_rate, output="sos")


def pitch_contour(timeline: ph.Timeline, voice: Voice, times: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
  """F0 in Hz at `times`: declination, a rise on each accented vowel, slow jitter."""
  f0 = voice.f0 * (1.08 - 0.2 * times / timeline.duration)
  for i in np.flatnonzero(timeline.accents):
    centre = 0.5 * (timeline.start[i] + timeline.end[i])
    f0 = f0 * (1.0 + 0.3 * np.exp(-0.5 * ((times - centre) / 0.07) ** 2))
  wobble = scipy.ndimage.gaussian_filter1d(rng.standard_normal(len(times)), 25)
  return f0 * (1.0 + 0.15 * wobble)


def synthesize(timeline: ph.Timeline, voice: Voice, sample_rate: int,
               num_samples: int, rng: np.random.Generator) -> np.ndarray:
  """Renders the timeline as a waveform.

  Returns:
    [num_samples] float32 in [-1, 1].
  """
  t = np.arange(num_samples) / sample_rate
  tc = np.arange(int(np.ceil(num_samples / sample_rate * _CONTROL_RATE)) + 1) / _CONTROL_RATE
  kind = np.array([ph.PHONES[p].kind for p in timeline.phones])
  idx = np.clip(np.searchsorted(timeline.end, tc, side="right"), 0, len(kind) - 1)
  voiced = np.array([ph.PHONES[p].voiced for p in timeline.phones])

  # Voicing: full on vowels, a murmur on nasals, a voice bar in voiced closures.
  voice_amp = np.select([kind == "vowel", kind == "nasal", (kind == "stop") & voiced],
                        [1.0, 0.3, 0.08], 0.0)[idx]
  voice_amp = _control(voice_amp, 0.008, t)

  f0 = np.interp(t, tc, pitch_contour(timeline, voice, tc, rng))
  phase = np.cumsum(f0 / sample_rate)
  source = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
  source = scipy.signal.lfilter([1.0], [1.0, -1.9, 0.9025], source)  # glottal tilt
  source = source / (np.abs(source).max() + 1e-9)
  source = source + voice.breath * rng.standard_normal(num_samples) * 0.1

  formants = np.stack([ph.piecewise(timeline, np.array(
      [ph.PHONES[p].formants[k] for p in timeline.phones], float), tc) for k in range(3)])
  formants = _control(formants, 0.02, t) * voice.formant_scale
  vowel_tract = source
  for k, bw in enumerate((90.0, 110.0, 160.0)):
    vowel_tract = _resonate(vowel_tract, formants[k], np.full(num_samples, bw), float(sample_rate))
  vowel_tract = vowel_tract / (np.abs(vowel_tract).max() + 1e-9)
  out = voice_amp * vowel_tract

  noise = rng.standard_normal(num_samples)
  for i, p in enumerate(timeline.phones):
    phone = ph.PHONES[p]
    if phone.noise_band is None:
      continue
    sos = _band_pass(*phone.noise_band, sample_rate)
    a, b = int(timeline.start[i] * sample_rate), int(timeline.end[i] * sample_rate)
    if b <= a:
      continue
    seg = scipy.signal.sosfilt(sos, noise[a:b])
    n = b - a
    if phone.kind == "fricative":
      env = np.sin(np.linspace(0, np.pi, n)) ** 0.5 * 0.25
    else:  # stop: silent closure, then a burst and (voiceless) aspiration
      burst_len = int(0.015 * sample_rate)
      asp_len = 0 if phone.voiced else int(0.025 * sample_rate)
      env = np.zeros(n)
      tail = min(n, burst_len + asp_len)
      env[n - tail:] = np.concatenate([np.full(burst_len, 0.5), np.full(asp_len, 0.12)])[-tail:]
    out[a:b] += env * seg / (np.abs(seg).max() + 1e-9)

  out = out + 3e-4 * rng.standard_normal(num_samples)  # room noise floor
  return (0.8 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)
