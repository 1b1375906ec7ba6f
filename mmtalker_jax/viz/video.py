"""Animations to MP4 (H.264, with the speech muxed in), headless.

The ffmpeg binary comes from the imageio-ffmpeg wheel: no system libraries.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from typing import Iterable, Iterator

import imageio_ffmpeg
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.viz import raster


def animation_bounds(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The box around every frame [T,V,3], so the view does not move."""
  return frames.min(axis=(0, 1)), frames.max(axis=(0, 1))


def render_animation(frames: np.ndarray, faces: np.ndarray, size: int = 512,
                     colours: np.ndarray | None = None) -> Iterator[np.ndarray]:
  """Yields [size,size,3] uint8 images of frames [T,V,3] (colours: [V,3] or [T,V,3])."""
  bounds = animation_bounds(frames)
  for t, verts in enumerate(frames):
    c = colours[t] if colours is not None and colours.ndim == 3 else colours
    yield raster.render(verts, faces, c, size, bounds)


def write_mp4(path: str | os.PathLike, images: Iterable[np.ndarray], fps: float,
              audio_path: str | None = None) -> int:
  """Encodes images to `path` atomically; muxes `audio_path` when given.

  ffmpeg is started with `start_new_session` (it ignores the terminal's
  Ctrl-C, and the caller stops it): no Python code runs between fork and
  exec, so JAX's threads are never forked (imageio-ffmpeg's own writer sets
  a preexec_fn, which makes Python fork and JAX warn).

  Returns:
    The number of frames written.

  Raises:
    RuntimeError: with ffmpeg's last message, if it fails.
  """
  images = iter(images)
  first = next(images)  # its size sets the video's
  h, w = first.shape[:2]
  count = 0
  with fileio.atomic_path(path) as tmp:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    if audio_path:
      cmd += ["-i", audio_path, "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "15", "-f", "mp4", tmp]
    ffmpeg = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
      for image in itertools.chain([first], images):
        ffmpeg.stdin.write(np.ascontiguousarray(image, np.uint8).tobytes())
        count += 1
      ffmpeg.stdin.close()
    except BrokenPipeError:
      pass  # ffmpeg stopped early: its message follows
    except BaseException:
      ffmpeg.kill()
      ffmpeg.wait()
      raise
    err = ffmpeg.stderr.read().decode(errors="replace").strip()
    if ffmpeg.wait() != 0:
      raise RuntimeError(f"ffmpeg failed: {(err.splitlines() or ['no message'])[-1]}")
  return count
