"""Phones and sentences of the SynthTalk corpus: what is said, and when.

A sentence is a phone sequence shared by every subject (like VOCASET, where
all subjects read the same sentences); each subject says it at its own rate.
The timeline (phone start/end times, accented vowels, pauses) drives both the
speech synthesizer and the face motion, which is what makes motion predictable
from audio.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Phone:
  """One phone class: its sound and its articulation targets.

  formants: (F1, F2, F3) in Hz for voiced resonance (vowel or nasal murmur),
    or the formant locus a stop/fricative pulls its neighbours toward.
  noise_band: (low, high) Hz of frication/burst noise; None for none.
  jaw, round, spread, close: articulation targets in [0, 1].
  """
  name: str
  kind: str  # vowel | fricative | stop | nasal | pause
  duration: float
  formants: tuple[float, float, float]
  voiced: bool
  noise_band: tuple[float, float] | None
  jaw: float
  round: float = 0.0
  spread: float = 0.0
  close: float = 0.0


PHONES: tuple[Phone, ...] = (
    Phone("a", "vowel", 0.12, (750, 1150, 2450), True, None, jaw=1.0, spread=0.2),
    Phone("ae", "vowel", 0.12, (660, 1720, 2410), True, None, jaw=0.8, spread=0.5),
    Phone("e", "vowel", 0.11, (500, 1850, 2500), True, None, jaw=0.5, spread=0.7),
    Phone("i", "vowel", 0.10, (280, 2250, 3000), True, None, jaw=0.15, spread=1.0),
    Phone("o", "vowel", 0.12, (550, 850, 2400), True, None, jaw=0.6, round=0.8),
    Phone("u", "vowel", 0.11, (310, 870, 2250), True, None, jaw=0.2, round=1.0),
    Phone("s", "fricative", 0.10, (400, 1800, 2600), False, (4200, 7600), jaw=0.1, spread=0.4),
    Phone("sh", "fricative", 0.10, (400, 1700, 2400), False, (2000, 6000), jaw=0.15, round=0.7),
    Phone("f", "fricative", 0.09, (400, 1100, 2400), False, (1200, 7000), jaw=0.1, close=0.5),
    Phone("p", "stop", 0.09, (400, 800, 2200), False, (500, 2500), jaw=0.05, close=1.0),
    Phone("b", "stop", 0.08, (400, 800, 2200), True, (500, 2500), jaw=0.05, close=1.0),
    Phone("t", "stop", 0.08, (400, 1800, 2600), False, (3000, 7000), jaw=0.15),
    Phone("d", "stop", 0.07, (400, 1800, 2600), True, (3000, 7000), jaw=0.15),
    Phone("k", "stop", 0.09, (400, 1500, 2300), False, (1500, 3500), jaw=0.25),
    Phone("g", "stop", 0.08, (400, 1500, 2300), True, (1500, 3500), jaw=0.25),
    Phone("m", "nasal", 0.08, (250, 1100, 2300), True, None, jaw=0.05, close=1.0),
    Phone("n", "nasal", 0.07, (250, 1500, 2500), True, None, jaw=0.15),
    Phone("_", "pause", 0.25, (500, 1500, 2500), False, None, jaw=0.0),
)
PHONE_INDEX = {p.name: i for i, p in enumerate(PHONES)}
_VOWELS = [i for i, p in enumerate(PHONES) if p.kind == "vowel"]
_CONSONANTS = [i for i, p in enumerate(PHONES) if p.kind not in ("vowel", "pause")]
PAUSE = PHONE_INDEX["_"]


class Sentence(NamedTuple):
  """What is said: phone ids [n] and per-phone accent flags [n] (bool)."""
  phones: np.ndarray
  accents: np.ndarray


class Timeline(NamedTuple):
  """When it is said, in seconds.

  phones: [n] phone ids; start, end: [n] times; accents: [n] bool;
  duration: total length (= end[-1]).
  """
  phones: np.ndarray
  start: np.ndarray
  end: np.ndarray
  accents: np.ndarray
  duration: float


def make_sentence(rng: np.random.Generator, target_seconds: float) -> Sentence:
  """Random words of CV(C) syllables with pauses between some words.

  Args:
    rng: the sentence's own generator (shared by all subjects).
    target_seconds: length at the phones' nominal durations.
  """
  phones = [PAUSE]
  total = PHONES[PAUSE].duration
  while total < target_seconds - PHONES[PAUSE].duration:
    for _ in range(rng.integers(1, 4)):  # syllables of one word
      syllable = []
      if rng.random() < 0.85:
        syllable.append(int(rng.choice(_CONSONANTS)))
      syllable.append(int(rng.choice(_VOWELS)))
      if rng.random() < 0.35:
        syllable.append(int(rng.choice(_CONSONANTS)))
      phones += syllable
      total += sum(PHONES[p].duration for p in syllable)
    if rng.random() < 0.3:
      phones.append(PAUSE)
      total += PHONES[PAUSE].duration
  phones.append(PAUSE)
  phones = np.array(phones, np.int32)
  vowel_pos = np.flatnonzero(np.isin(phones, _VOWELS))
  n_acc = min(len(vowel_pos), int(rng.integers(1, 4)))
  accents = np.zeros(len(phones), bool)
  accents[rng.choice(vowel_pos, size=n_acc, replace=False)] = True
  return Sentence(phones, accents)


def make_timeline(sentence: Sentence, rng: np.random.Generator, rate: float,
                  min_seconds: float, max_seconds: float) -> Timeline:
  """Times the sentence for one subject.

  Args:
    sentence: the phones.
    rng: the (subject, sentence) generator, for per-token duration jitter.
    rate: the subject's speaking rate (>1 is faster).
    min_seconds, max_seconds: the total is scaled into this range.
  """
  nominal = np.array([PHONES[p].duration for p in sentence.phones])
  durations = nominal * rng.uniform(0.8, 1.25, size=len(nominal)) / rate
  total = durations.sum()
  durations *= np.clip(total, min_seconds, max_seconds) / total
  end = np.cumsum(durations)
  start = end - durations
  return Timeline(sentence.phones, start, end, sentence.accents, float(end[-1]))


def phone_attribute(timeline: Timeline, attr: str) -> np.ndarray:
  """[n] value of a Phone field (e.g. 'jaw') for each phone of the timeline."""
  return np.array([getattr(PHONES[p], attr) for p in timeline.phones], np.float64)


def piecewise(timeline: Timeline, values: np.ndarray, times: np.ndarray) -> np.ndarray:
  """Samples the per-phone step function `values` at `times` (seconds)."""
  idx = np.searchsorted(timeline.end, times, side="right")
  return values[np.clip(idx, 0, len(values) - 1)]
