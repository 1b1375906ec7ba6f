"""A corpus preview: the template with its regions, and a frame of motion.

  python -m mmtalker_jax.viz.preview CORPUS [--out PNG] [--subject NAME]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from mmtalker_jax import fileio, safe_pickle
from mmtalker_jax.errors import InputError, exit_on_input_error
from mmtalker_jax.mesh import io as mesh_io
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


def write_corpus_preview(root: str, out: str | None = None, subject: str | None = None) -> str:
  """Draws a corpus's template regions and the widest-open frame of one sequence.

  Reads the FaceFormer layout at `root` with a `regions.json` and a
  `template.obj` (SynthTalk writes both).

  Returns:
    The PNG's path (default <root>/preview.png).
  """
  raw = mesh_io.read_mesh(os.path.join(root, "template.obj"))
  regions_path = os.path.join(root, "regions.json")
  if not os.path.isfile(regions_path):
    raise InputError(regions_path, "missing: the preview colours the regions it names")
  with open(regions_path, encoding="utf-8") as f:
    regions = {k: np.asarray(v) for k, v in json.load(f).items()}
  templates = safe_pickle.load_templates(os.path.join(root, "templates.pkl"))
  subject = subject or sorted(templates)[0]
  if subject not in templates:
    raise InputError(os.path.join(root, "templates.pkl"), f"no subject {subject!r}")
  folder = os.path.join(root, "vertices_npy")
  names = sorted(n for n in os.listdir(folder) if n.startswith(subject + "_"))
  if not names:
    raise InputError(folder, f"no sequence of {subject!r}")
  template = templates[subject]
  verts = np.load(os.path.join(folder, names[0])).reshape(-1, len(template), 3)
  frame = verts[np.argmax(np.abs(verts - template).max(axis=(1, 2)))]
  path = out or os.path.join(root, "preview.png")
  corpus_preview(path, template, raw.faces, regions, frame)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description="Draws a corpus preview PNG.")
  parser.add_argument("corpus", help="corpus folder (e.g. a SynthTalk one)")
  parser.add_argument("--out", default=None, help="default: <corpus>/preview.png")
  parser.add_argument("--subject", default=None, help="default: the first in templates.pkl")
  args = parser.parse_args()
  exit_on_input_error(lambda: print(write_corpus_preview(args.corpus, args.out, args.subject)))


if __name__ == "__main__":
  main()
