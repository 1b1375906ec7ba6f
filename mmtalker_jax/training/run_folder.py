"""A run's folder around its checkpoints: --ckpt paths and the mesh a run carries.

<workdir>/checkpoints/    Orbax steps (checkpoint.py)
<workdir>/config.json     the run's config, for people
<workdir>/mean_motion.npy the mean-motion baseline [V,3]
<workdir>/mesh/           topology, UVs, regions and the training subjects'
                          templates: predict.py needs no corpus
<workdir>/metrics.jsonl   one JSON object per logged step
"""

from __future__ import annotations

import json
import os

import numpy as np
import orbax.checkpoint as ocp

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io
from mmtalker_jax.mesh.assets import MeshAssets, build_mesh_assets
from mmtalker_jax.training.checkpoint import CHECKPOINTS, best_step, reader


def resolve(path: str) -> tuple[str, int | None]:
  """--ckpt PATH -> (workdir, step); step None = the workdir's best, else latest.

  Accepts a workdir, its checkpoints/ folder, or one step's folder.

  Raises:
    InputError: for a missing folder or one that holds no checkpoint.
  """
  path = os.path.abspath(os.path.expanduser(path)).rstrip("/")
  if not os.path.exists(path):
    raise InputError(path, "checkpoint folder not found")
  if not os.path.isdir(path):
    raise InputError(path, "not a folder: pass a run's workdir or one step's folder")
  name = os.path.basename(path)
  parent = os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) == CHECKPOINTS:
    return os.path.dirname(parent), int(name)
  if name == CHECKPOINTS:
    return parent, None
  if os.path.isdir(os.path.join(path, CHECKPOINTS)):
    return path, None
  if os.path.isdir(os.path.join(path, "members")):
    raise InputError(path, "a sweep's workdir: pass one of its runs, "
                     f"{os.path.join(path, 'members', 'NAME')}[/seed_S]")
  raise InputError(path, f"holds no {CHECKPOINTS}/ folder: pass a run's workdir "
                   "(the --workdir of train.py) or one of its step folders")


def open_for_reading(path: str) -> tuple[ocp.CheckpointManager, str, int]:
  """(manager, workdir, step) for --ckpt PATH, checking the step is complete."""
  workdir, step = resolve(path)
  mngr = reader(workdir)
  steps = mngr.all_steps()
  if not steps:
    raise InputError(os.path.join(workdir, CHECKPOINTS),
                     "holds no complete checkpoint (empty, or every save was interrupted)")
  if step is None:
    step = best_step(mngr)
    step = mngr.latest_step() if step is None else step
  elif step not in steps:
    raise InputError(path, f"step {step} is incomplete (half-written); complete steps: "
                     f"{sorted(steps)}")
  return mngr, workdir, step


def save_mesh(workdir: str, assets: MeshAssets, templates: dict[str, np.ndarray]) -> None:
  """Writes <workdir>/mesh/{template.obj, regions.json, templates.npz}."""
  folder = os.path.join(workdir, "mesh")
  mesh_io.write_obj(os.path.join(folder, "template.obj"), assets.vertices, assets.faces,
                     assets.face_uv, assets.uv_layout)
  fileio.write_text(os.path.join(folder, "regions.json"),
                    json.dumps({k: v.tolist() for k, v in assets.regions.items()}))
  with fileio.atomic_path(os.path.join(folder, "templates.npz")) as tmp:
    np.savez(tmp, **templates)


def load_mesh(workdir: str) -> tuple[MeshAssets, dict[str, np.ndarray]]:
  """The MeshAssets and subject templates `save_mesh` wrote.

  Raises:
    InputError: if the run has no mesh folder (not a complete training run).
  """
  folder = os.path.join(workdir, "mesh")
  if not os.path.isfile(os.path.join(folder, "templates.npz")):
    raise InputError(folder, "missing: the run's mesh assets were never written")
  raw = mesh_io.read_mesh(os.path.join(folder, "template.obj"))
  with open(os.path.join(folder, "regions.json"), encoding="utf-8") as f:
    regions = {k: np.asarray(v, np.int32) for k, v in json.load(f).items()}
  with np.load(os.path.join(folder, "templates.npz")) as z:
    templates = {k: z[k] for k in z.files}
  assets = build_mesh_assets(raw.vertices, raw.faces, raw.face_uv, regions, source=folder,
                             uv_layout=raw.uv_layout)
  return assets, templates
