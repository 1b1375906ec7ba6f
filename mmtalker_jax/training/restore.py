"""Everything evaluate.py and predict.py need from a checkpoint path, and nothing else."""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh.assets import MeshAssets
from mmtalker_jax.models.registry import build_model
from mmtalker_jax.training import checkpoint, run_folder, sharding


@dataclasses.dataclass
class Restored:
  """A trained model ready to predict."""
  config: ml_collections.ConfigDict
  workdir: str
  step: int
  styles: list[str]
  model: nn.Module
  params: dict
  mesh: jax.sharding.Mesh
  mean_motion: np.ndarray | None
  templates: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def restore(ckpt: str, assets: MeshAssets | None = None,
            config: ml_collections.ConfigDict | None = None) -> Restored:
  """Loads the checkpoint at `ckpt` (workdir: best, else latest; or a step folder;
  or a published FaceFormer `.pth`, see `published`).

  Args:
    ckpt: the --ckpt path.
    assets: the mesh to run on (a corpus's); its topology must match the
      checkpoint's. None: the run's own (<workdir>/mesh).
    config: a `.pth` file's config (configs/faceformer_vocaset.py, ...); a
      run folder brings its own.

  Raises:
    InputError: for a missing, empty or half-written checkpoint, or a mesh
      that differs from the one the checkpoint was trained on.
  """
  if is_published(ckpt):
    return published(ckpt, config, assets)
  mngr, workdir, step = run_folder.open_for_reading(ckpt)
  config, meta = checkpoint.read_config(mngr, step)
  saved, templates = run_folder.load_mesh(workdir)
  if assets is None:
    assets = saved
  restored = _restore_onto(mngr, workdir, step, config, meta, assets)
  restored.templates = templates
  return restored


def is_published(ckpt: str) -> bool:
  """Whether `ckpt` names a PyTorch state dict (a released FaceFormer model)."""
  return ckpt.endswith((".pth", ".pt"))


_NEEDS_CONFIG = ("a PyTorch checkpoint needs its FaceFormer config: --config "
                 "configs/faceformer_vocaset.py or configs/faceformer_biwi.py")


def published_config(path: str, config_file: str | None) -> ml_collections.ConfigDict:
  """The config file (--config) that describes the `.pth` at `path`.

  Raises:
    InputError: naming `path` when no config file is given.
  """
  from mmtalker_jax import configlib  # deferred: only for .pth files

  if not config_file:
    raise InputError(path, _NEEDS_CONFIG)
  return configlib.load_config(config_file)


def published(path: str, config: ml_collections.ConfigDict | None,
              assets: MeshAssets | None) -> Restored:
  """A released FaceFormer `.pth` as a restored run, read without torch.

  `config` describes it (configs/faceformer_vocaset.py or faceformer_biwi.py:
  width, period, audio alignment, and the training subjects in the order of
  the model's one-hot style vector); `assets` is the template mesh it animates.

  Raises:
    InputError: naming `path`, without a config or mesh, or for weights that
      do not fit them.
  """
  from mmtalker_jax.models import faceformer_weights  # deferred: only for .pth files
  from mmtalker_jax.torch_checkpoint import load_state_dict

  if config is None or config.model.get("name") != "faceformer":
    raise InputError(path, _NEEDS_CONFIG)
  if assets is None:
    raise InputError(path, "a PyTorch checkpoint needs the template mesh it animates "
                     "(predict.py: --template MESH; evaluate.py: the corpus's)")
  styles = list(config.data.splits.train.subjects)
  model = build_model(config, assets, len(styles))
  state = load_state_dict(path)
  faceformer_weights.check_sizes(state, int(config.model.width), assets.num_vertices,
                                 len(styles), path)
  params = faceformer_weights.params_from_state_dict(state, model.speech, path)
  mesh = sharding.make_mesh()
  params = jax.device_put(params, sharding.replicated(mesh))
  return Restored(config, path, 0, styles, model, params, mesh, None)


def read_run_config(ckpt: str) -> ml_collections.ConfigDict:
  """The config saved with the checkpoint `ckpt` resolves to."""
  mngr, _, step = run_folder.open_for_reading(ckpt)
  return checkpoint.read_config(mngr, step)[0]


def _restore_onto(mngr, workdir, step, config, meta, assets: MeshAssets) -> Restored:
  if (meta["num_vertices"], meta["num_faces"]) != (assets.num_vertices, assets.num_faces):
    raise InputError(os.path.join(workdir, checkpoint.CHECKPOINTS, str(step)),
                     f"trained on a mesh of {meta['num_vertices']} vertices/{meta['num_faces']} "
                     f"faces, but the data's template has {assets.num_vertices}/"
                     f"{assets.num_faces}")
  if meta.get("topology", assets.fingerprint) != assets.fingerprint:
    raise InputError(os.path.join(workdir, checkpoint.CHECKPOINTS, str(step)),
                     f"trained on topology {meta['topology']}, but the data's template is "
                     f"{assets.fingerprint}: same sizes, different faces or UVs "
                     "(a checkpoint only runs on the mesh it was trained on)")
  try:
    model = build_model(config, assets, len(meta["styles"]))
  except (TypeError, AttributeError, KeyError) as e:
    raise InputError(os.path.join(workdir, checkpoint.CHECKPOINTS, str(step)),
                     f"its saved config does not describe a model this version builds ({e}); "
                     "it was written by an older version") from None
  mesh = sharding.make_mesh()
  placement = sharding.replicated(mesh)
  try:
    params = checkpoint.restore_params(mngr, step, placement, meta.get("param_shapes"))
  except Exception as e:  # noqa: BLE001 (any storage error: see checkpoint.restore_error)
    why = checkpoint.describe(e)
    readable = [s for s in sorted(mngr.all_steps()) if s != step and checkpoint.restore_error(
        mngr, s, placement, read=checkpoint.restore_params) is None]
    hint = (f"readable steps: {readable} (pass --ckpt "
            f"{os.path.join(workdir, checkpoint.CHECKPOINTS, str(readable[-1]))})"
            if readable else "no other step is readable")
    raise InputError(os.path.join(workdir, checkpoint.CHECKPOINTS, str(step)),
                     f"step {step} cannot be read, its files are truncated or missing "
                     f"({why}); {hint}") from None
  mean_path = os.path.join(workdir, "mean_motion.npy")
  mean_motion = np.load(mean_path) if os.path.isfile(mean_path) else None
  return Restored(config, workdir, step, list(meta["styles"]), model, params, mesh, mean_motion)

