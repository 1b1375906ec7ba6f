"""The Orbax side of a run: save, restore and list the readable steps.

<workdir>/checkpoints/<step>/{state,config,meta}   Orbax, written atomically (async)

Kept: the latest `keep` steps plus the best by validation LVE. The rest of a
run folder (config.json, mesh/, metrics) and --ckpt path resolution live in
run_folder.py; a full disk is recognised in disk_space.py.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from mmtalker_jax.errors import InputError

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


def complete_steps(workdir: str) -> list[int]:
  """The steps of <workdir>/checkpoints whose save finished (folders Orbax finalized)."""
  folder = os.path.join(workdir, CHECKPOINTS)
  if not os.path.isdir(folder):
    return []
  mngr = reader(workdir)
  steps = sorted(mngr.all_steps())
  mngr.close()
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
