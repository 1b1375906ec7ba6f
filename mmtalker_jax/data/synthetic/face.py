"""The SynthTalk face: a procedural template with UVs, regions and motion fields.

Everything is a function of the UV point, so the topology, the regions and the
motion fields are shared by every subject while the shape varies per subject.
The mouth is at UV (0.5, 0.3), the eyes at (0.32, 0.63) and (0.68, 0.63).
Lengths are in metres, like VOCASET.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.spatial

MOUTH = (0.5, 0.3)
EYES = ((0.32, 0.63), (0.68, 0.63))
MOTION_FIELDS = ("jaw", "round", "spread", "close", "brow", "blink", "detail")


class Shape(NamedTuple):
  """Per-subject face shape: width/height/depth (m) and feature strengths."""
  width: float
  height: float
  depth: float
  nose: float
  lips: float
  brow: float


def mean_shape() -> Shape:
  return Shape(width=0.15, height=0.19, depth=0.07, nose=1.0, lips=1.0, brow=1.0)


def random_shape(rng: np.random.Generator) -> Shape:
  m = mean_shape()
  return Shape(width=m.width * rng.uniform(0.92, 1.08),
               height=m.height * rng.uniform(0.92, 1.08),
               depth=m.depth * rng.uniform(0.9, 1.1),
               nose=rng.uniform(0.75, 1.25), lips=rng.uniform(0.75, 1.25),
               brow=rng.uniform(0.7, 1.3))


def _hex_grid(spacing: float) -> np.ndarray:
  n = int(np.ceil(1.0 / spacing)) + 2
  j, i = np.meshgrid(np.arange(n), np.arange(int(n / 0.866) + 2), indexing="ij")
  x = j * spacing + (i % 2) * spacing / 2
  y = i * spacing * np.sqrt(3) / 2
  return np.stack([x.ravel(), y.ravel()], axis=1)


def _in_lip_patch(uv: np.ndarray) -> np.ndarray:
  return ((uv[:, 0] - MOUTH[0]) / 0.17) ** 2 + ((uv[:, 1] - MOUTH[1]) / 0.085) ** 2 <= 1


def make_topology(spacing: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
  """A disk of UV points, twice as dense around the mouth, Delaunay-triangulated.

  Args:
    spacing: UV distance between neighbouring vertices away from the mouth.

  Returns:
    uv [V,2] float32 in [0,1]^2 and faces [F,3] int32 (counter-clockwise in UV).
  """
  radius = 0.48
  coarse = _hex_grid(spacing)
  coarse = coarse[np.linalg.norm(coarse - 0.5, axis=1) < radius - 0.6 * spacing]
  fine = _hex_grid(spacing / 2) + spacing / 4
  fine = fine[_in_lip_patch(fine)]
  coarse = coarse[~_in_lip_patch(coarse)]
  # Keep coarse points clear of the fine patch so no sliver triangles form.
  dist = scipy.spatial.cKDTree(fine).query(coarse)[0]
  coarse = coarse[dist > 0.6 * spacing]
  n_rim = int(2 * np.pi * radius / spacing)
  angle = 2 * np.pi * np.arange(n_rim) / n_rim
  rim = 0.5 + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
  uv = np.concatenate([coarse, fine, rim])
  order = np.lexsort((uv[:, 0], uv[:, 1]))  # rows bottom to top: a stable order
  uv = np.round(uv[order], 6)
  faces = scipy.spatial.Delaunay(uv).simplices.astype(np.int32)
  e1 = uv[faces[:, 1]] - uv[faces[:, 0]]
  e2 = uv[faces[:, 2]] - uv[faces[:, 0]]
  flip = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
  faces[flip] = faces[flip][:, [0, 2, 1]]
  faces = faces[np.lexsort(faces.T[::-1])]
  return uv.astype(np.float32), faces


def uv_atlas(uv: np.ndarray, faces: np.ndarray, seam_u: float = 0.2) -> np.ndarray:
  """The template's texture atlas: two islands with a seam, like FLAME's.

  Faces whose centre lies left of `seam_u` (the left cheek and temple) form a
  second island, moved to the right of the first; the vertices along the cut
  carry one UV per island. Positions, regions and motion stay functions of
  the continuous `uv`; only the OBJ's texture coordinates are the atlas.

  Args:
    uv: [V,2] the continuous face coordinates.
    faces: [F,3].

  Returns:
    [F,3,2] float32 corner UVs in [0,1]^2.
  """
  corner = uv[faces].astype(np.float64)  # [F,3,2]
  second = corner[:, :, 0].mean(axis=1) < seam_u
  corner[second, :, 0] += 1.0
  corner[:, :, 0] /= 1.25  # both islands side by side in [0,1]
  return corner.astype(np.float32)


def _bump(u, v, cu, cv, su, sv):
  return np.exp(-((u - cu) / su) ** 2 - ((v - cv) / sv) ** 2)


def face_positions(uv: np.ndarray, shape: Shape) -> np.ndarray:
  """[V,3] float32 positions of the face with `shape` at UV points `uv` [V,2]."""
  u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
  r2 = (2 * (u - 0.5)) ** 2 + (2 * (v - 0.5)) ** 2
  z = shape.depth * np.sqrt(np.clip(1 - 0.8 * r2, 0.05, None))
  z += 0.024 * shape.nose * _bump(u, v, 0.5, 0.46, 0.045, 0.085)
  z += 0.006 * shape.nose * _bump(u, v, 0.5, 0.40, 0.07, 0.03)
  for eu, ev in EYES:
    z -= 0.009 * _bump(u, v, eu, ev, 0.08, 0.05)
    z += 0.005 * _bump(u, v, eu, ev - 0.005, 0.04, 0.025)
  z += 0.006 * shape.brow * _bump(u, v, 0.5, 0.71, 0.3, 0.03)
  z += 0.004 * shape.lips * _bump(u, v, MOUTH[0], MOUTH[1] + 0.018, 0.075, 0.022)
  z += 0.004 * shape.lips * _bump(u, v, MOUTH[0], MOUTH[1] - 0.018, 0.07, 0.024)
  z -= 0.0015 * _bump(u, v, MOUTH[0], MOUTH[1], 0.07, 0.012)
  z += 0.008 * _bump(u, v, 0.5, 0.13, 0.1, 0.06)
  x = (u - 0.5) * shape.width
  y = (v - 0.5) * shape.height
  return np.stack([x, y, z], axis=1).astype(np.float32)


def regions(uv: np.ndarray) -> dict[str, np.ndarray]:
  """Vertex index sets: lips, eye (both eyes with lids), brow, upper_face."""
  u, v = uv[:, 0], uv[:, 1]
  lips = ((u - MOUTH[0]) / 0.12) ** 2 + ((v - MOUTH[1]) / 0.045) ** 2 <= 1
  eye = np.zeros(len(uv), bool)
  for eu, ev in EYES:
    eye |= ((u - eu) / 0.1) ** 2 + ((v - ev) / 0.055) ** 2 <= 1
  brow = (v >= 0.66) & (v <= 0.82) & (np.abs(u - 0.5) <= 0.35)
  upper = v >= 0.56
  return {name: np.flatnonzero(mask).astype(np.int32)
          for name, mask in (("lips", lips), ("eye", eye), ("brow", brow),
                             ("upper_face", upper))}


def motion_fields(uv: np.ndarray, shape: Shape) -> np.ndarray:
  """Displacement per unit of each articulation, [P,V,3] float32, P = len(MOTION_FIELDS).

  jaw: the lower face drops and swings back; round: lips purse and protrude;
  spread: lip corners pull out; close: lips press together; brow: the brows
  lift; blink: the upper lids drop; detail: a fine ripple along the lip line,
  a few millimetres in wavelength, that only dense sampling near the mouth sees.
  """
  u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
  du, dv = u - MOUTH[0], v - MOUTH[1]
  x = du * shape.width
  fields = np.zeros((len(MOTION_FIELDS), len(uv), 3))

  below = 1 / (1 + np.exp((dv + 0.004) / 0.01)) * np.exp(-(du / 0.3) ** 2)
  fields[0, :, 1] = -0.012 * below + 0.0015 * _bump(u, v, MOUTH[0], MOUTH[1] + 0.02, 0.1, 0.02)
  fields[0, :, 2] = -0.004 * below

  lip = _bump(u, v, MOUTH[0], MOUTH[1], 0.11, 0.045)
  fields[1, :, 0] = -0.35 * x * lip
  fields[1, :, 2] = 0.006 * lip
  fields[2, :, 0] = 0.3 * x * lip
  fields[2, :, 1] = 0.0012 * lip * np.abs(du) / 0.11
  fields[2, :, 2] = -0.0015 * lip

  fields[3, :, 1] = (-0.003 * _bump(u, v, MOUTH[0], MOUTH[1] + 0.012, 0.1, 0.012)
                     + 0.004 * _bump(u, v, MOUTH[0], MOUTH[1] - 0.012, 0.1, 0.012))
  fields[3, :, 2] = -0.001 * lip

  brow = np.exp(-((v - 0.72) / 0.07) ** 2) * np.exp(-(du / 0.35) ** 2) * (v > 0.58)
  fields[4, :, 1] = 0.004 * brow
  fields[4, :, 2] = 0.0008 * brow
  for eu, _ in EYES:
    lid = _bump(u, v, eu, 0.645, 0.05, 0.02)
    fields[5, :, 1] += -0.004 * lid
    fields[5, :, 2] += 0.001 * lid

  band = _bump(u, v, MOUTH[0], MOUTH[1], 0.1, 0.025)
  fields[6, :, 2] = 0.0015 * band * np.sin(2 * np.pi * du / 0.04)
  return fields.astype(np.float32)
