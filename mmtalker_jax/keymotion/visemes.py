"""Phones to visemes, and the key frames where a viseme peaks.

Phones are ARPAbet (CMU dictionary's 39, stress marks dropped) plus 'SIL'.
Each maps to one viseme, a class of phones that look alike on the face:

  bilabial      P B M              lips closed
  labiodental   F V                lower lip against the upper teeth
  rounded       UW UH OW AO OY W   lips rounded and protruded
  open          AA AE AH AW AY EH ER  jaw open
  spread        IY IH EY Y         lips spread, jaw nearly closed
  dental        TH DH              tongue between the teeth
  alveolar      T D N S Z L R      tongue behind the teeth, lips neutral
  postalveolar  SH ZH CH JH        lips slightly rounded
  velar         K G NG HH          lips neutral
  silence       SIL                the face at rest

Key visemes are those a face shows unmistakably at one instant: bilabial
closures, labiodentals, rounded and open vowels. Consecutive phones of one
viseme make one run (a recognizer may split a phone in two), and a key frame
sits at the middle of each run of a key viseme: frame floor(mid * fps), the
frame whose interval [t / fps, (t + 1) / fps) holds the run's midpoint.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

VISEMES: dict[str, tuple[str, ...]] = {
    "bilabial": ("P", "B", "M"),
    "labiodental": ("F", "V"),
    "rounded": ("UW", "UH", "OW", "AO", "OY", "W"),
    "open": ("AA", "AE", "AH", "AW", "AY", "EH", "ER"),
    "spread": ("IY", "IH", "EY", "Y"),
    "dental": ("TH", "DH"),
    "alveolar": ("T", "D", "N", "S", "Z", "L", "R"),
    "postalveolar": ("SH", "ZH", "CH", "JH"),
    "velar": ("K", "G", "NG", "HH"),
    "silence": ("SIL",),
}
KEY_VISEMES = ("bilabial", "labiodental", "rounded", "open")
_OF_PHONE = {p: v for v, phones in VISEMES.items() for p in phones}


def viseme(phone: str) -> str:
  """The viseme of an ARPAbet phone ('AH0' and 'ah' read as 'AH'); noise and
  fillers pocketsphinx reports ('+NSN+', '+SPN+', ...) read as silence.

  Raises:
    ValueError: for a phone outside ARPAbet.
  """
  name = phone.upper().rstrip("012")
  if name.startswith("+") or name in ("SP", "SIL", ""):
    return "silence"
  if name not in _OF_PHONE:
    raise ValueError(f"unknown phone {phone!r}: expected ARPAbet (AA ... ZH) or SIL")
  return _OF_PHONE[name]


def key_frames(phones: Sequence[tuple[str, float, float]], fps: float,
               num_frames: int | None = None) -> list[tuple[int, str]]:
  """(frame, viseme) at the middle of every run of a key viseme, in time order.

  Args:
    phones: (phone, start_s, end_s) triples.
    fps: the mesh frame rate.
    num_frames: drop frames at or past it (the sequence's length).

  Returns:
    One entry per run; two runs whose middles fall in one frame keep the first.
  """
  runs: list[list] = []  # [viseme, start, end] of consecutive phones of one viseme
  for phone, start, end in phones:
    v = viseme(phone)
    if runs and runs[-1][0] == v:
      runs[-1][2] = end
    else:
      runs.append([v, start, end])
  out: list[tuple[int, str]] = []
  for v, start, end in runs:
    if v not in KEY_VISEMES:
      continue
    frame = int(math.floor(0.5 * (start + end) * fps))
    if (num_frames is not None and frame >= num_frames) or (out and out[-1][0] == frame):
      continue
    out.append((frame, v))
  return out


def key_track(keys: Sequence[tuple[int, str]], num_frames: int) -> np.ndarray:
  """[T] int32 per-frame key visemes, the `key_visemes` a batch holds: 0 on
  ordinary frames, 1 + KEY_VISEMES.index(viseme) at a key frame."""
  track = np.zeros(num_frames, np.int32)
  for frame, v in keys:
    if 0 <= frame < num_frames:
      track[frame] = 1 + KEY_VISEMES.index(v)
  return track
