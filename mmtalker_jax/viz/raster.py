"""A headless software rasterizer (numba): shaded meshes with no GL at all.

Orthographic front view (camera looking down -z), z-buffered, per-vertex
colours interpolated across triangles, Lambert plus ambient lighting.
"""

from __future__ import annotations

import numba
import numpy as np


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """[V,3] unit normals, area-weighted averages of the incident faces'."""
  tri = vertices[faces]
  fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  vn = np.zeros_like(vertices, dtype=np.float64)
  for c in range(3):
    np.add.at(vn, faces[:, c], fn)
  return (vn / (np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


@numba.njit(cache=True)
def _rasterize(px, py, pz, faces, colours, shade, image, depth):  # pragma: no cover
  h, w = depth.shape
  for f in range(faces.shape[0]):
    a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
    x0, y0, x1, y1, x2, y2 = px[a], py[a], px[b], py[b], px[c], py[c]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if abs(area) < 1e-12:
      continue
    xmin = max(int(np.floor(min(x0, x1, x2))), 0)
    xmax = min(int(np.ceil(max(x0, x1, x2))), w - 1)
    ymin = max(int(np.floor(min(y0, y1, y2))), 0)
    ymax = min(int(np.ceil(max(y0, y1, y2))), h - 1)
    for yy in range(ymin, ymax + 1):
      for xx in range(xmin, xmax + 1):
        sx, sy = xx + 0.5, yy + 0.5
        w0 = ((x1 - sx) * (y2 - sy) - (x2 - sx) * (y1 - sy)) / area
        w1 = ((x2 - sx) * (y0 - sy) - (x0 - sx) * (y2 - sy)) / area
        w2 = 1.0 - w0 - w1
        if w0 < 0 or w1 < 0 or w2 < 0:
          continue
        z = w0 * pz[a] + w1 * pz[b] + w2 * pz[c]
        if z <= depth[yy, xx]:
          continue
        depth[yy, xx] = z
        s = w0 * shade[a] + w1 * shade[b] + w2 * shade[c]
        for k in range(3):
          image[yy, xx, k] = s * (w0 * colours[a, k] + w1 * colours[b, k] + w2 * colours[c, k])


def render(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None,
           size: int = 512, bounds: tuple[np.ndarray, np.ndarray] | None = None,
           background: float = 1.0, shade: bool = True) -> np.ndarray:
  """Renders a front view of a mesh.

  Args:
    vertices: [V,3] positions (x right, y up, z toward the viewer).
    faces: [F,3] int.
    colours: [V,3] RGB in [0,1]; default light grey.
    size: output is size x size pixels.
    bounds: (lo [3], hi [3]) box framed by the view; default the mesh's own.
      Pass the same box for every frame of an animation.
    background: grey level of empty pixels.
    shade: light the surface; False paints the colours flat (for 2-D plots).

  Returns:
    [size,size,3] uint8 image.
  """
  vertices = np.asarray(vertices, np.float64)
  faces = np.ascontiguousarray(faces, np.int64)
  if colours is None:
    colours = np.full((len(vertices), 3), 0.82)
  lo, hi = bounds if bounds is not None else (vertices.min(0), vertices.max(0))
  extent = float(max(hi[0] - lo[0], hi[1] - lo[1])) * 1.08 + 1e-12
  centre = 0.5 * (np.asarray(lo) + np.asarray(hi))
  px = (vertices[:, 0] - centre[0]) / extent * size + size / 2
  py = size / 2 - (vertices[:, 1] - centre[1]) / extent * size
  light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
  if shade:
    lighting = 0.3 + 0.7 * np.clip(vertex_normals(vertices, faces) @ light, 0.0, 1.0)
  else:
    lighting = np.ones(len(vertices))
  image = np.full((size, size, 3), background, np.float64)
  depth = np.full((size, size), -np.inf)
  _rasterize(px, py, vertices[:, 2].copy(), faces, np.asarray(colours, np.float64),
             lighting.astype(np.float64), image, depth)
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def heat_colours(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
  """[V] non-negative values -> [V,3] colours, white (0) through red to dark red (vmax)."""
  vmax = float(vmax if vmax is not None else np.max(values) + 1e-12)
  t = np.clip(np.asarray(values, np.float64) / vmax, 0, 1)[:, None]
  white, red, dark = np.array([0.92, 0.92, 0.92]), np.array([0.95, 0.2, 0.1]), np.array([0.4, 0, 0.1])
  return np.where(t < 0.6, white + (red - white) * t / 0.6, red + (dark - red) * (t - 0.6) / 0.4)
