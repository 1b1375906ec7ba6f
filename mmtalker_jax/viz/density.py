"""Where the model looks: the learned per-face sampling density, on the UV plane and the face.

  python -m mmtalker_jax.viz.density --ckpt runs/synthtalk --out density.png

Colour is the sampling probability of a face relative to uniform-by-area
sampling, p(face) / p_area(face), on a log scale: white = as often as area
alone would sample it, red = more often, blue = less.
"""

from __future__ import annotations

import argparse
import sys

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from mmtalker_jax import fileio
from mmtalker_jax.errors import exit_on_input_error
from mmtalker_jax.models.sampler import face_log_probs, sampler_settings
from mmtalker_jax.viz import raster


def relative_density(logits: np.ndarray, areas: np.ndarray, sampler) -> np.ndarray:
  """[F] p(face) / p_area(face) for the sampling distribution of `sampler` (SamplerSettings)."""
  log_p = face_log_probs(jnp.asarray(logits), jnp.asarray(areas), sampler.temperature,
                         sampler.epsilon, sampler.learned)
  return np.exp(np.asarray(log_p, np.float64)) / (areas / areas.sum())


def diverging_colours(log_ratio: np.ndarray, limit: float) -> np.ndarray:
  """[n] log2 ratios -> [n,3]: blue (-limit) through white (0) to red (+limit)."""
  t = np.clip(log_ratio / limit, -1, 1)[:, None]
  white, red, blue = np.array([0.95, 0.95, 0.95]), np.array([0.85, 0.1, 0.1]), np.array([0.1, 0.3, 0.85])
  return np.where(t >= 0, white + (red - white) * t, white + (blue - white) * (-t))


def density_figure(vertices: np.ndarray, faces: np.ndarray, face_uv: np.ndarray,
                   ratio: np.ndarray, size: int = 512) -> Image.Image:
  """UV plane (corner UVs [F,3,2], seams and all) | front view, faces coloured by log2(ratio)."""
  log_ratio = np.log2(np.maximum(ratio, 1e-12))
  limit = max(1.0, float(np.percentile(np.abs(log_ratio), 99)))
  colours = np.repeat(diverging_colours(log_ratio, limit), 3, axis=0)  # per face corner
  flat = faces.reshape(-1)
  tri = np.arange(len(flat)).reshape(-1, 3)
  uv3 = np.concatenate([face_uv.reshape(-1, 2), np.zeros((len(flat), 1))], axis=1)
  uv_img = raster.render(uv3, tri, colours, size, bounds=(np.zeros(3), np.ones(3)), shade=False)
  face_img = raster.render(vertices[flat], tri, colours, size)
  image = Image.fromarray(np.concatenate([uv_img, face_img], axis=1))
  draw = ImageDraw.Draw(image)
  draw.text((8, 8), "UV plane", fill=(0, 0, 0))
  draw.text((size + 8, 8), "face (front)", fill=(0, 0, 0))
  draw.text((8, size - 20), f"sampling density / uniform-by-area: blue 2^-{limit:.1f} .. "
            f"white 1 .. red 2^{limit:.1f}; max {ratio.max():.1f}x, min {ratio.min():.2f}x",
            fill=(0, 0, 0))
  return image


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ckpt", required=True)
  parser.add_argument("--out", default="density.png")
  parser.add_argument("--size", type=int, default=512)
  args = parser.parse_args(argv)

  def run() -> int:
    from absl import logging
    from mmtalker_jax.inference.export import check_writable

    logging.set_verbosity(logging.ERROR)  # Orbax notes it opened the run read-only
    from mmtalker_jax.training.restore import restore

    check_writable(args.out)
    restored = restore(args.ckpt)
    assets = restored.model.assets
    ratio = relative_density(np.asarray(restored.params["face_logits"]), assets.face_areas,
                             sampler_settings(restored.config.sampler))
    image = density_figure(assets.vertices, assets.faces, assets.face_uv, ratio, args.size)
    with fileio.atomic_path(args.out) as tmp:
      image.save(tmp, format="PNG")
    print(f"wrote {args.out}: density from {ratio.min():.2f}x to {ratio.max():.1f}x uniform "
          f"(step {restored.step})")
    return 0

  return exit_on_input_error(run)


if __name__ == "__main__":
  sys.exit(main())
