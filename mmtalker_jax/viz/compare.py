"""Side-by-side videos: ground truth | prediction | per-vertex error, with the speech."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mmtalker_jax.viz import raster, video


def comparison_frames(gt: np.ndarray, pred: np.ndarray, faces: np.ndarray, size: int = 384,
                      unit_to_mm: float = 1000.0):
  """Yields [size, 3*size, 3] uint8 frames for gt and pred [T,V,3].

  The error panel colours the ground-truth face by ||pred - gt|| from white (0)
  to dark red (the sequence's 99th percentile, printed in mm).
  """
  err = np.linalg.norm(pred - gt, axis=-1) * unit_to_mm  # [T,V] mm
  vmax = max(float(np.percentile(err, 99)), 1e-6)
  bounds = video.animation_bounds(np.concatenate([gt, pred]))
  for t in range(len(gt)):
    panels = [raster.render(gt[t], faces, None, size, bounds),
              raster.render(pred[t], faces, None, size, bounds),
              raster.render(gt[t], faces, raster.heat_colours(err[t], vmax), size, bounds)]
    image = Image.fromarray(np.concatenate(panels, axis=1))
    draw = ImageDraw.Draw(image)
    for k, label in enumerate(("ground truth", "prediction",
                               f"error (white 0, dark red {vmax:.1f} mm)")):
      draw.text((k * size + 8, 8), label, fill=(0, 0, 0))
    draw.text((8, size - 18), f"frame {t}", fill=(0, 0, 0))
    yield np.asarray(image)


def write_comparison(path: str, gt: np.ndarray, pred: np.ndarray, faces: np.ndarray,
                     fps: float, audio_path: str | None, size: int = 384) -> int:
  """Writes the comparison MP4 (atomically); returns the frame count."""
  return video.write_mp4(path, comparison_frames(gt, pred, faces, size), fps, audio_path)
