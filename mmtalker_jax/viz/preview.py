"""A corpus preview: the template with its regions, and a frame of motion."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from mmtalker_jax import fileio
from mmtalker_jax.viz import raster

REGION_COLOURS = {"upper_face": (0.55, 0.75, 0.95), "eye": (0.3, 0.8, 0.4),
                  "lips": (0.95, 0.35, 0.35)}


def region_colours(num_vertices: int, regions: Mapping[str, np.ndarray]) -> np.ndarray:
  """[V,3] colours: grey, painted by region (later regions on top)."""
  colours = np.full((num_vertices, 3), 0.82)
  for name, colour in REGION_COLOURS.items():
    if name in regions:
      colours[regions[name]] = colour
  return colours


def corpus_preview(path: str | os.PathLike, template: np.ndarray, faces: np.ndarray,
                   regions: Mapping[str, np.ndarray], frame: np.ndarray,
                   size: int = 384) -> None:
  """Writes a PNG: template with regions | one frame coloured by displacement (mm)."""
  bounds = (np.minimum(template.min(0), frame.min(0)), np.maximum(template.max(0), frame.max(0)))
  left = raster.render(template, faces, region_colours(len(template), regions), size, bounds)
  disp_mm = np.linalg.norm(frame - template, axis=1) * 1000
  right = raster.render(frame, faces, raster.heat_colours(disp_mm), size, bounds)
  image = Image.fromarray(np.concatenate([left, right], axis=1))
  draw = ImageDraw.Draw(image)
  legend = "  ".join(f"{k}" for k in REGION_COLOURS if k in regions)
  draw.text((8, 8), f"template regions: {legend}", fill=(0, 0, 0))
  draw.text((size + 8, 8), f"frame: displacement, max {disp_mm.max():.1f} mm", fill=(0, 0, 0))
  with fileio.atomic_path(path) as tmp:
    image.save(tmp, format="PNG")
