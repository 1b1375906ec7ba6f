"""Animations to MP4 (H.264, with the speech muxed in), headless.

The ffmpeg binary comes from the imageio-ffmpeg wheel: no system libraries.
"""

from __future__ import annotations

import itertools
import os
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

  Returns:
    The number of frames written.
  """
  images = iter(images)
  first = next(images)  # its size sets the video's
  h, w = first.shape[:2]
  count = 0
  with fileio.atomic_path(path) as tmp:
    writer = imageio_ffmpeg.write_frames(
        tmp, (w, h), fps=fps, quality=7, macro_block_size=1, ffmpeg_log_level="error",
        audio_path=audio_path,
        audio_codec="aac" if audio_path else None, output_params=["-shortest"] if audio_path else None)
    writer.send(None)
    try:
      for image in itertools.chain([first], images):
        writer.send(np.ascontiguousarray(image))
        count += 1
    finally:
      writer.close()
  return count
