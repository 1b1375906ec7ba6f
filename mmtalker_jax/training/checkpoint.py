"""Orbax checkpoints in a run's workdir, with the config saved beside the weights.

<workdir>/checkpoints/<step>/{state,config}   Orbax, written atomically (async)
<workdir>/config.json                          the run's config, for people
<workdir>/mean_motion.npy                      the mean-motion baseline [V,3]
<workdir>/mesh/                                topology, UVs, regions and the training
                                               subjects' templates: predict.py needs no corpus
<workdir>/metrics.jsonl                        one JSON object per logged step
Kept: the latest `keep` steps plus the best by validation LVE.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import warnings
from typing import Callable

import jax
import ml_collections
from absl import logging as absl_logging
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io
from mmtalker_jax.mesh.assets import MeshAssets, build_mesh_assets

CHECKPOINTS = "checkpoints"
BEST_METRIC = "val_lve"


def manager(workdir: str, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
  """An async CheckpointManager over <workdir>/checkpoints."""
  policy = pp.AnyPreservationPolicy([
      pp.LatestN(keep),
      pp.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True, n=1,
               keep_checkpoints_without_metrics=False)])
  # A save interrupted by a kill leaves a *.orbax-checkpoint-tmp folder; a
  # writing manager clears those so the step can be saved again.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, enable_async_checkpointing=not read_only,
      read_only=read_only, create=not read_only, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS),
                               options=options, item_names=("state", "config", "meta"))


def save(mngr: ocp.CheckpointManager, step: int, state, config: ml_collections.ConfigDict,
         meta: dict, metrics: dict | None = None) -> None:
  """Saves `state` with the config and `meta` (mesh sizes, style names) beside it.

  meta also gets the parameters' shapes and dtypes ('param_shapes'), which
  `restore_params` reads instead of Orbax's own metadata (about 0.25 s less
  for every predict.py start).
  """
  meta = {**meta, "param_shapes": jax.tree_util.tree_map(
      lambda x: [list(x.shape), str(x.dtype)], state.params)}
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
      meta=ocp.args.JsonSave(meta)), metrics=metrics)


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state):
  """Restores the TrainState of `step` onto the shardings of `abstract_state`."""
  with _quiet_failure():
    out = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
  return out["state"]


def reader(workdir: str) -> ocp.CheckpointManager:
  """A read-only manager over <workdir>/checkpoints that can restore the parameters alone."""
  options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), CHECKPOINTS), options=options,
      item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                     "config": ocp.JsonCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})


def restore_params(mngr: ocp.CheckpointManager, step: int, sharding,
                   shapes: dict | None = None) -> dict:
  """The parameters of `step` (a `reader`'s), every array placed with `sharding`.

  Shapes and dtypes come from `shapes` (meta['param_shapes'] as `save` wrote
  it) or else the checkpoint's own metadata: no model trace and no optimizer
  state, which is what makes evaluate.py and predict.py start fast.
  """
  with _quiet_failure():
    if shapes:
      target = {"params": jax.tree_util.tree_map(
          lambda s: jax.ShapeDtypeStruct(tuple(s[0]), np.dtype(s[1]), sharding=sharding),
          shapes, is_leaf=lambda x: isinstance(x, list) and len(x) == 2 and isinstance(x[1], str))}
    else:
      tree = mngr.item_metadata(step)["state"]
      if tree is None or "params" not in tree:
        raise ValueError(f"step {step} holds no parameters")
      target = {"params": jax.tree_util.tree_map(
          lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding),
          dict(tree["params"]))}
    restore_args = jax.tree_util.tree_map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding),
                                          target)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True)))
  return out["state"]["params"]


@contextlib.contextmanager
def _quiet_failure():
  """A failed restore ends in its one exception, without asyncio's echoes of it."""
  _drop_closed_loop_reports()  # before: a failing read can report before the restore raises
  try:
    yield
  except Exception:
    # asyncio logs each failed read nobody awaits ("Future exception was never
    # retrieved"), and Python warns of reads never started: dozens of lines
    # after the one error that matters.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited",
                            category=RuntimeWarning)
    raise


def _drop_closed_loop_reports() -> None:
  """When a restore fails, the reads still in flight finish into the event loop
  Orbax has closed, and each reports "Event loop is closed" as an unraisable
  exception. Those, and only those, are dropped; other unraisables still print."""
  previous = sys.unraisablehook
  if getattr(previous, "_drops_closed_loop", False):
    return

  def hook(unraisable):
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
      return
    previous(unraisable)

  hook._drops_closed_loop = True
  sys.unraisablehook = hook


def restore_error(mngr: ocp.CheckpointManager, step: int, target,
                  read: Callable = restore_state) -> str | None:
  """None if `read(mngr, step, target)` succeeds, else why not (one line).

  `read` is `restore_state` (the default; target: the abstract TrainState) or
  `restore_params` (target: the parameters' sharding). A truncated or missing
  data file surfaces from Orbax's storage layer as any of several exception
  types, so every Exception counts as unreadable here.
  """
  try:
    read(mngr, step, target)
  except Exception as e:  # noqa: BLE001 (see docstring)
    return describe(e)
  return None


def describe(e: BaseException) -> str:
  """'Type: first line of the message' (at most 200 characters of it)."""
  return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Renames checkpoints/<step> to <step>.unreadable (kept for inspection, never deleted).

  The step can then be saved again; Orbax ignores the renamed folder. Returns its path.
  """
  src = os.path.join(str(mngr.directory), str(step))
  dst = f"{src}.unreadable"
  n = 1
  while os.path.exists(dst):
    n += 1
    dst = f"{src}.unreadable{n}"
  os.rename(src, dst)
  mngr.reload()
  return dst


def restore_newest_readable(mngrs: list[ocp.CheckpointManager], abstract_state,
                            on_skip: Callable[[str], None], may_rename: bool = True,
                            barrier: Callable[[], None] = lambda: None) -> tuple[int, list]:
  """(step, states): the newest step every manager holds and can read, restored.

  An unreadable step (truncated or missing files) is reported through
  `on_skip`, set aside (`set_aside`, by the process with `may_rename`) and
  the next older common step is tried. (0, []) when no step is left.
  """
  while True:
    common = set.intersection(*(set(m.all_steps()) for m in mngrs))
    if not common:
      return 0, []
    step = max(common)
    states, bad = [], []
    for m in mngrs:
      try:
        states.append(restore_state(m, step, abstract_state))
      except Exception as e:  # noqa: BLE001 (see restore_error)
        bad.append((m, describe(e)))
    if not bad:
      return step, states
    for m, why in bad:
      folder = os.path.join(str(m.directory), str(step))
      kept = set_aside(m, step) if may_rename else f"{folder}.unreadable"
      on_skip(f"skipping checkpoint step {step}: {folder} cannot be read ({why}); "
              f"kept as {kept}, resuming from an older step")
    barrier()
    for m in mngrs:
      m.reload()


def is_no_space(e: BaseException) -> bool:
  """True for a failed write because the disk is full (from Python or Orbax's storage layer)."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "ENOSPC" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def check_space(workdirs: list[str], state_bytes: int) -> None:
  """Raises OSError(ENOSPC) unless the disk has room for one checkpoint in each workdir.

  Orbax writes a checkpoint under a temporary name and renames it when done,
  so a save that runs out of space midway leaves every earlier checkpoint
  intact, but its storage threads print a screen of errors on the way; this
  check fails first, in one line. The margin covers metadata.
  """
  need = int(state_bytes * 1.1) + (1 << 20)
  free = shutil.disk_usage(workdirs[0]).free
  if free < need * len(workdirs):
    raise OSError(errno.ENOSPC, f"No space left on device: a checkpoint needs about "
                  f"{need * len(workdirs) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free",
                  workdirs[0])


def complete_steps(workdir: str) -> list[int]:
  """The steps of <workdir>/checkpoints whose save finished (folders Orbax finalized)."""
  folder = os.path.join(workdir, CHECKPOINTS)
  if not os.path.isdir(folder):
    return []
  previous = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # a read-only manager warns that it is one
  try:
    mngr = manager(workdir, keep=1, read_only=True)
    steps = sorted(mngr.all_steps())
    mngr.close()
  finally:
    absl_logging.set_verbosity(previous)
  return steps


def read_config(mngr: ocp.CheckpointManager, step: int) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, meta) saved with `step`.

  Raises:
    InputError: naming the step folder, if it is incomplete or damaged.
  """
  try:
    out = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore(),
                                                     meta=ocp.args.JsonRestore()))
  except (KeyError, ValueError, OSError) as e:
    raise InputError(os.path.join(str(mngr.directory), str(step)),
                     f"incomplete or damaged checkpoint ({str(e).splitlines()[0]})") from None
  return ml_collections.ConfigDict(out["config"]), dict(out["meta"])


def best_step(mngr: ocp.CheckpointManager) -> int | None:
  """The step with the lowest validation LVE, or None when no step has one."""
  scored = []
  for step in mngr.all_steps():
    try:
      m = mngr.metrics(step)
    except (KeyError, ValueError, OSError):
      continue
    if m and BEST_METRIC in m:
      scored.append((m[BEST_METRIC], step))
  return min(scored)[1] if scored else None


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
                     assets.face_uv)
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
  return build_mesh_assets(raw.vertices, raw.faces, raw.face_uv, regions, source=folder), templates
