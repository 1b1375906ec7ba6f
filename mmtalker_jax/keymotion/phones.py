"""Phone timelines, [(ARPAbet phone, start_s, end_s), ...], from three sources.

  synthtalk   SynthTalk's generator knows what every take says and when:
              exact, for training on the built-in corpus (`from_synthtalk`)
  file        `<root>/phones/<stem>.json` holding {"phones": [[p, s, e], ...]}:
              forced alignments a user brings for their corpus (`read_file`)
  recognized  pocketsphinx's US-English acoustic model in all-phone mode, for
              any other speech (`Recognizer`): no transcript needed; its
              frames are 10 ms
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.keymotion.visemes import viseme

Phones = list[tuple[str, float, float]]
SAMPLE_RATE = 16000  # what the recognizer hears

# SynthTalk's phone classes (data/synthetic/phones.py) in ARPAbet.
SYNTHTALK_PHONES = {"a": "AA", "ae": "AE", "e": "EH", "i": "IY", "o": "OW", "u": "UW",
                    "s": "S", "sh": "SH", "f": "F", "p": "P", "b": "B", "t": "T", "d": "D",
                    "k": "K", "g": "G", "m": "M", "n": "N", "_": "SIL"}
_STEM = re.compile(r"^(?P<subject>.+)_sentence(?P<sentence>\d+)$")


def from_synthtalk(spec, stem: str) -> Phones:
  """The generator's own timeline of the SynthTalk take `stem`
  ('SynthTalk_S03_sentence07') in a corpus of `spec`.

  Raises:
    InputError: naming `stem` when the corpus has no such take.
  """
  from mmtalker_jax.data.synthetic import corpus, phones  # deferred: the generator

  match = _STEM.match(stem)
  subjects = spec.train_subjects + spec.unseen_subjects
  if not match or match["subject"] not in subjects or not (
      1 <= int(match["sentence"]) <= spec.num_sentences):
    raise InputError(stem, "not a take of this SynthTalk corpus")
  timeline, _ = corpus.take_timeline(spec, subjects.index(match["subject"]),
                                     int(match["sentence"]))
  return [(SYNTHTALK_PHONES[phones.PHONES[p].name], float(s), float(e))
          for p, s, e in zip(timeline.phones, timeline.start, timeline.end)]


def read_file(path: str) -> Phones:
  """An alignment file's phones.

  Raises:
    InputError: naming `path`, for unreadable JSON, a missing "phones" list,
      an entry that is not [phone, start, end] with start <= end, or a phone
      outside ARPAbet.
  """
  raw = fileio.read_json(path)
  entries = raw.get("phones") if isinstance(raw, dict) else None
  if not isinstance(entries, list):
    raise InputError(path, 'expected {"phones": [[phone, start_s, end_s], ...]}')
  out = []
  for i, entry in enumerate(entries):
    try:
      phone, start, end = entry
      start, end = float(start), float(end)
      viseme(str(phone))
    except (TypeError, ValueError) as e:
      raise InputError(path, f"phones[{i}] = {entry!r}: {e}") from None
    if not 0 <= start <= end:
      raise InputError(path, f"phones[{i}] = {entry!r}: needs 0 <= start <= end")
    out.append((str(phone), start, end))
  return out


def alignment_file(root: str, stem: str) -> str:
  """Where a corpus keeps the alignment of its sequence `stem`."""
  return os.path.join(root, "phones", stem + ".json")


def for_sequence(root: str, stem: str, wave=None, spec=None,
                 recognizer=None) -> tuple[Phones, str]:
  """(phones, source) of a corpus sequence: its alignment file when there is
  one ('file'), else the generator's timeline for a SynthTalk corpus of `spec`
  ('synthtalk'), else pocketsphinx on its 16 kHz `wave` ('pocketsphinx'):
  an [S] array, or a function returning one (called only then).
  `recognizer`: a `Recognizer` (or any wave -> phones function) to reuse.

  Raises:
    InputError: for a bad alignment file, or nothing to go on (no file, no
      spec, no wave).
  """
  path = alignment_file(root, stem)
  if os.path.isfile(path):
    return read_file(path), "file"
  if spec is not None:
    return from_synthtalk(spec, stem), "synthtalk"
  if wave is None:
    raise InputError(path, "no alignment file, and no audio to recognize phones from")
  return (recognizer or Recognizer())(wave() if callable(wave) else wave), "pocketsphinx"


class Recognizer:
  """pocketsphinx's all-phone decoder (US English, shipped with the package)."""

  FRAME_SECONDS = 0.01

  def __init__(self):
    try:
      from pocketsphinx import Decoder, get_model_path
    except ImportError:
      raise InputError("", "aligning speech needs pocketsphinx: "
                       "pip install -r requirements.txt") from None
    model = get_model_path()
    self._decoder = Decoder(hmm=os.path.join(model, "en-us", "en-us"),
                            allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
                            lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")

  def __call__(self, wave: np.ndarray) -> Phones:
    """Phones of 16 kHz mono float `wave` [S]; [] when nothing was recognized."""
    pcm = (np.clip(np.asarray(wave, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
    self._decoder.start_utt()
    self._decoder.process_raw(pcm.tobytes(), full_utt=True)
    self._decoder.end_utt()
    out = []
    for seg in self._decoder.seg():
      phone = "SIL" if seg.word.startswith("+") or seg.word == "SIL" else seg.word
      out.append((phone, seg.start_frame * self.FRAME_SECONDS,
                  (seg.end_frame + 1) * self.FRAME_SECONDS))
    return out


def to_json(phones: Phones) -> str:
  return json.dumps({"phones": [[p, round(s, 4), round(e, 4)] for p, s, e in phones]})
