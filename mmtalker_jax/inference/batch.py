"""Many speech files, one process: one restore, one compile per length bucket.

`predict.py --audio a.wav b.flac ...` or `--audio_dir DIR --out_dir OUT`
writes OUT/<stem>.npy (and OUT/<stem>.mp4, OUT/<stem>_obj/ when asked) for
each input. A file that cannot be read or animated is reported in one line and
skipped; the others finish; no output of a failed file is left behind.
"""

from __future__ import annotations

import dataclasses
import os
import time

from mmtalker_jax.data.audio import load_audio
from mmtalker_jax import errors
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference import export
from mmtalker_jax.inference.predictor import Predictor

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif",
                    ".aiff", ".au", ".caf", ".w64", ".webm")
FORMATS = ("npy", "obj", "mp4")


def audio_files(folder: str) -> list[str]:
  """The audio files directly in `folder` (by extension), sorted by name.

  Raises:
    InputError: if `folder` is missing or holds no audio file.
  """
  if not os.path.isdir(folder):
    raise InputError(folder, "audio folder not found")
  found = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                 if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith("."))
  if not found:
    raise InputError(folder, f"holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
  return found


def output_paths(sources: list[str], out_dir: str, formats: tuple[str, ...]) -> list[dict]:
  """[{format: path}] per source: OUT/<stem>.npy, OUT/<stem>.mp4, OUT/<stem>_obj/.

  Raises:
    InputError: for an unknown format, or two inputs with the same stem.
  """
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise InputError("", f"unknown output format(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(FORMATS)}")
  seen: dict[str, str] = {}
  paths = []
  for src in sources:
    stem = os.path.splitext(os.path.basename(src))[0]
    if stem in seen:
      raise InputError(src, f"has the same name as {seen[stem]}, so their outputs in "
                       f"{out_dir} would collide; rename one")
    seen[stem] = src
    names = {"npy": f"{stem}.npy", "mp4": f"{stem}.mp4", "obj": f"{stem}_obj"}
    paths.append({f: os.path.join(out_dir, names[f]) for f in formats})
  return paths


@dataclasses.dataclass
class Totals:
  files: int = 0
  failed: int = 0
  frames: int = 0
  vertices: int = 0
  audio_seconds: float = 0.0
  read_seconds: float = 0.0
  predict_seconds: float = 0.0
  write_seconds: float = 0.0
  # Key-motion runs: files aligned, speech phones and key frames found, time spent.
  aligned: int = 0
  phones: int = 0
  key_frames: int = 0
  align_seconds: float = 0.0


def animate_all(predictor: Predictor, sources: list[str], outputs: list[dict],
                style: str | None, sub, log=print, on_error=errors.report,
                note=errors.note) -> Totals:
  """Animates every source into its outputs; failures are reported, not raised.

  Args:
    predictor: the restored model.
    sources: audio files.
    outputs: `output_paths(sources, ...)`.
    style: a training subject's style (None: the first).
    sub: the (possibly subdivided) mesh to write (`inference.subdivide`).
    log: where the per-file lines go.
    on_error: called with each file's InputError after its outputs are removed
      (default: one line on stderr; raise to stop at the first).
    note: called with one line when a key-motion run finds no speech in a
      file (it is animated from the audio alone).
  """
  totals = Totals()
  sr = int(predictor.features["sample_rate"])
  faces_uv = None
  for i, (src, paths) in enumerate(zip(sources, outputs)):
    prefix = f"[{i + 1}/{len(sources)}]"
    written: list[str] = []
    try:
      t0 = time.perf_counter()
      audio = load_audio(src, sr)
      t1 = time.perf_counter()
      try:
        frames = predictor.animate(audio, style, points=(sub.face_ids, sub.bary))
      except ValueError as e:
        raise InputError(src, str(e)) from None
      t2 = time.perf_counter()
      keys = predictor.key_frames
      if keys is not None:
        totals.aligned += 1
        totals.phones += keys.phones
        totals.key_frames += keys.key_frames
        totals.align_seconds += keys.seconds
        if not keys.key_frames:
          note(f"{src}: {keys.source} found no key frames ({keys.phones} speech phones); "
               "animated from the audio alone")
      for fmt, path in paths.items():
        if fmt == "npy":
          export.write_npy(path, frames)
        elif fmt == "obj":
          export.check_writable(path, is_dir=True)
          if faces_uv is None:
            faces_uv = sub.corner_values(predictor.model.assets.face_uv)
          # The template file's own vt order, unless subdivision made new faces.
          layout = predictor.model.assets.uv_layout if len(sub.faces) == len(
              predictor.model.assets.faces) else None
          export.write_obj_frames(path, frames, sub.faces, faces_uv, layout)
        else:
          export.write_video(path, frames, sub.faces, predictor.fps, audio, sr)
        written.append(path)
      t3 = time.perf_counter()
    except (InputError, OSError) as e:
      for path in written:  # nothing of a failed file is left
        export.remove(path)
      totals.failed += 1
      on_error(e if isinstance(e, InputError) else InputError(src, f"cannot write output ({e})"))
      continue
    totals.files += 1
    totals.frames += len(frames)
    totals.vertices = frames.shape[1]
    totals.audio_seconds += len(audio) / sr
    totals.read_seconds += t1 - t0
    totals.predict_seconds += t2 - t1
    totals.write_seconds += t3 - t2
    log(f"{prefix} {src}: {len(frames)} frames ({len(audio) / sr:.2f} s) -> "
        f"{', '.join(paths.values())}")
  return totals
