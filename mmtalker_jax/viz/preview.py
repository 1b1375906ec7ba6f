"""A corpus preview: the template with its regions, and a frame of motion.

  python -m mmtalker_jax.viz.preview CORPUS [--config configs/x.py] [--out PNG] [--subject NAME]
"""

from __future__ import annotations

import argparse
import os
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError, exit_on_input_error
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


def write_corpus_preview(root: str, out: str | None = None, subject: str | None = None,
                         config: str | None = None) -> str:
  """Draws a corpus's template regions and the widest-open frame of one sequence.

  Args:
    root: a corpus in the FaceFormer layout.
    out: the PNG (default <root>/preview.png).
    subject: whose first sequence (default: the first subject with sequences).
    config: a config file whose data section describes the corpus (template,
      regions, frame stride); default: read off the corpus, as the dataset
      doctor does (SynthTalk's manifest, else the first .obj/.ply).

  Returns:
    The PNG's path.
  """
  from mmtalker_jax.configlib import load_config
  from mmtalker_jax.data import check
  from mmtalker_jax.data.corpus import Corpus

  if config:
    cfg = load_config(config).data
    cfg.root = root
  else:
    cfg = check.infer_data_config(root, load_config(check.DEFAULT_CONFIG).data)
  corpus = Corpus(cfg)
  subjects = sorted({s.subject for s in corpus.sequences})
  subject = subject or subjects[0]
  sequences = [s for s in corpus.sequences if s.subject == subject]
  if not sequences:
    raise InputError(os.path.join(corpus.root, "vertices_npy"),
                     f"no sequence of {subject!r} (subjects: {', '.join(subjects)})")
  template = corpus.template(sequences[0])
  verts = corpus.vertices(sequences[0])
  frame = verts[np.argmax(np.abs(verts - template).max(axis=(1, 2)))]
  path = out or os.path.join(corpus.root, "preview.png")
  corpus_preview(path, template, corpus.assets.faces, corpus.assets.regions, frame)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description="Draws a corpus preview PNG.")
  parser.add_argument("corpus", help="corpus folder in the FaceFormer layout")
  parser.add_argument("--config", default=None, help="config describing the corpus (e.g. "
                      "configs/vocaset.py); default: read it off the corpus")
  parser.add_argument("--out", default=None, help="default: <corpus>/preview.png")
  parser.add_argument("--subject", default=None, help="default: the first with sequences")
  args = parser.parse_args()
  exit_on_input_error(lambda: print(write_corpus_preview(args.corpus, args.out, args.subject,
                                                         args.config)))


if __name__ == "__main__":
  main()
