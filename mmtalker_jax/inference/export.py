"""Writing an animation out: npy, one OBJ per frame, MP4 with sound.

Every writer leaves either its complete output or nothing: files go to a
temporary name first and are renamed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import soundfile as sf

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io


def check_writable(path: str | None, is_dir: bool = False) -> None:
  """Fails early, before any work, if `path` cannot be written.

  Raises:
    InputError: naming `path`.
  """
  if not path:
    return
  path = os.path.abspath(path)
  if is_dir and os.path.isdir(path) and os.listdir(path):
    raise InputError(path, "folder exists and is not empty; choose a new one")
  if not is_dir and os.path.isdir(path):
    raise InputError(path, "is a folder, expected a file name")
  parent = os.path.dirname(path)
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  try:  # the only sure test: make a file there
    with tempfile.TemporaryFile(dir=parent):
      pass
  except OSError as e:
    raise InputError(path, f"cannot write here ({parent}: {e.strerror or e})") from None


def remove(path: str) -> None:
  """Deletes a written output (file or OBJ folder), if it is there."""
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)


def write_npy(path: str, frames: np.ndarray) -> None:
  """[T,V,3] frames as a [T,V,3] float32 npy."""
  with fileio.atomic_path(path) as tmp:
    np.save(tmp, frames.astype(np.float32))


def write_obj_frames(folder: str, frames: np.ndarray, faces: np.ndarray,
                     face_uv: np.ndarray,
                     uv_layout: tuple[np.ndarray, np.ndarray] | None = None) -> None:
  """frame_000000.obj ... one per frame, the template's topology and corner UVs [F,3,2]
  (written in the template file's own `vt` order when `uv_layout` is given)."""
  folder = os.path.abspath(folder)
  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-obj-", dir=parent)
  try:
    for t, verts in enumerate(frames):
      with open(os.path.join(tmp, f"frame_{t:06d}.obj"), "w", encoding="utf-8") as f:
        f.write(mesh_io.obj_text(verts, faces, face_uv, uv_layout))
    if os.path.isdir(folder):
      os.rmdir(folder)  # empty, as check_writable made sure
    os.replace(tmp, folder)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def write_video(path: str, frames: np.ndarray, faces: np.ndarray, fps: float,
                audio: np.ndarray | None, sample_rate: int, size: int = 512) -> int:
  """A shaded front view at `fps` with `audio` muxed in; returns frames written."""
  from mmtalker_jax.viz import video  # deferred: the renderer pulls in numba

  with tempfile.TemporaryDirectory() as tmp:
    wav = None
    if audio is not None:
      wav = os.path.join(tmp, "speech.wav")
      sf.write(wav, audio, sample_rate, subtype="PCM_16")
    return video.write_mp4(path, video.render_animation(frames, faces, size), fps, wav)
