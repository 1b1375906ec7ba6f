"""Speech to phones, visemes and key frames.

  python -m mmtalker_jax.keymotion.align AUDIO [--fps 30] [--out keys.json]
                                         [--phones ALIGNMENT.json]

Recognizes the phones of AUDIO with pocketsphinx (or reads them from an
alignment file, phones.py), maps them to visemes and writes
{"phones": [[phone, start_s, end_s], ...], "visemes": [[viseme, start_s,
end_s], ...], "key_frames": [[frame, viseme], ...], "fps", "source"}. Audio in
which nothing is recognized (silence, noise) gets no key frames and a note.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from mmtalker_jax import fileio
from mmtalker_jax.cli import run_app
from mmtalker_jax.keymotion import phones as phones_lib
from mmtalker_jax.keymotion.visemes import key_frames, viseme

_FPS = flags.DEFINE_float("fps", 30.0, "Mesh frame rate of the key frames.", lower_bound=1.0)
_OUT = flags.DEFINE_string("out", "keys.json", "Where to write the JSON.")
_PHONES = flags.DEFINE_string("phones", None, "An alignment file to use instead of recognizing.")

SAMPLE_RATE = phones_lib.SAMPLE_RATE


def align(wave, fps: float, phones: phones_lib.Phones | None = None,
          recognizer: phones_lib.Recognizer | None = None) -> dict:
  """The JSON's content for 16 kHz mono `wave` [S] (phones recognized unless given)."""
  source = "file"
  if phones is None:
    phones = (recognizer or phones_lib.Recognizer())(wave)
    source = "pocketsphinx"
  num_frames = int(len(wave) * fps / SAMPLE_RATE + 0.5)
  return {"phones": [[p, round(s, 4), round(e, 4)] for p, s, e in phones],
          "visemes": [[viseme(p), round(s, 4), round(e, 4)] for p, s, e in phones],
          "key_frames": [[f, v] for f, v in key_frames(phones, fps, num_frames)],
          "fps": fps, "source": source}


def run(rest: list[str]):
  from mmtalker_jax.data.audio import load_audio
  from mmtalker_jax.errors import InputError

  if len(rest) != 1:
    raise InputError("", "give one audio file: python -m mmtalker_jax.keymotion.align AUDIO")
  wave = load_audio(rest[0], SAMPLE_RATE)
  given = phones_lib.read_file(_PHONES.value) if _PHONES.value else None
  result = align(wave, _FPS.value, given)
  fileio.write_text(_OUT.value, json.dumps(result) + "\n")
  speech = [p for p, _, _ in result["phones"] if viseme(p) != "silence"]
  if not speech:
    print(f"note: {rest[0]}: no speech recognized; no key frames", file=sys.stderr)
  print(f"{len(result['phones'])} phones ({len(speech)} speech), "
        f"{len(result['key_frames'])} key frames at {_FPS.value:g} fps -> {_OUT.value}")


if __name__ == "__main__":
  run_app(run, rest_args=True)
