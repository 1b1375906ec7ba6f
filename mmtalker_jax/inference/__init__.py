"""Inference: any speech file to a mesh animation, at any length and resolution."""

from __future__ import annotations

import time


from mmtalker_jax.data.audio import load_audio
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference import export
from mmtalker_jax.inference.predictor import Predictor
from mmtalker_jax.inference.subdivide import subdivide as subdivide_mesh


def animate_file(ckpt: str, audio_path: str, style: str | None = None, out: str | None = None,
                 obj_dir: str | None = None, video: str | None = None,
                 subdivide: int = 0) -> str:
  """predict.py: animates `audio_path` and writes the requested outputs.

  Returns:
    A one-line summary.
  """
  from mmtalker_jax.training.restore import restore

  export.check_writable(out)
  export.check_writable(video)
  export.check_writable(obj_dir, is_dir=True)
  run = restore(ckpt)
  predictor = Predictor(run)
  predictor.style_index(style)  # an unknown style fails before the audio is read
  sr = int(predictor.features["sample_rate"])
  audio = load_audio(audio_path, sr)
  assets = run.model.assets
  sub = subdivide_mesh(assets.faces, subdivide)
  start = time.perf_counter()
  try:
    frames = predictor.animate(audio, style, points=(sub.face_ids, sub.bary))
  except ValueError as e:
    raise InputError(audio_path, str(e)) from None
  elapsed = time.perf_counter() - start
  if out:
    export.write_npy(out, frames)
  if obj_dir:
    export.write_obj_frames(obj_dir, frames, sub.faces, sub.corner_values(assets.face_uv))
  if video:
    export.write_video(video, frames, sub.faces, predictor.fps, audio, sr)
  written = ", ".join(p for p in (out, obj_dir, video) if p)
  return (f"{len(frames)} frames x {frames.shape[1]} vertices at {predictor.fps:g} fps "
          f"({len(audio) / sr:.2f} s of audio, style {predictor.styles[predictor.style_index(style)]}, "
          f"predicted in {elapsed:.2f} s with compilation) -> {written}")
