"""train_and_evaluate(config, workdir): the one training loop, CPU to pod, one run or a sweep."""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher, prefetch
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference.decoder import decode_budget
from mmtalker_jax.models.mmtalker import build_model
from mmtalker_jax.models.speech import setup as speech_setup
from mmtalker_jax.training import checkpoint, disk_space, evaluation, report, run_folder, sharding
from mmtalker_jax.training.members import (Member, is_sweep, members_of, stack,
                                           stacked_settings)
from mmtalker_jax.training.members import sample_key as sample_key_of
from mmtalker_jax.training.optimizer import learning_rate_schedule, make_optimizer
from mmtalker_jax.training.progress import MetricsLog, Progress
from mmtalker_jax.training.state import create_state
from mmtalker_jax.training.step import train_step


class TrainingStopped(RuntimeError):
  """Training cannot go on; the message says why and what is left (train.py: exit 3)."""


class TrainingDiverged(TrainingStopped):
  """The loss became NaN or inf."""


class DiskFull(TrainingStopped):
  """A write failed for lack of space."""


def _sync(name: str) -> None:
  """Waits until every process reaches this point (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def ensure_corpus(data_cfg: ml_collections.ConfigDict) -> None:
  """Generates SynthTalk at data.root when it is missing and the config allows it."""
  root = os.path.expanduser(data_cfg.root)
  if os.path.isdir(root):
    return
  if not data_cfg.synthetic.enabled:
    raise InputError(root, "corpus folder not found (see README: preparing data)")
  if jax.process_index() == 0:
    # Imported only here: its scipy and numba imports add ~2 s to every start.
    from mmtalker_jax.data.synthetic import corpus as synthtalk
    print(f"generating SynthTalk at {root} ...", flush=True)
    synthtalk.generate(root, synthtalk.spec_from_config(data_cfg))  # appears when whole
  _sync("synthtalk")


@dataclasses.dataclass
class StepFn:
  """The jitted update, called as step(state, batch, key); `extra` holds a sweep's
  per-member settings and point masks (placed on the member axis)."""
  jitted: Callable
  extra: tuple = ()

  def __call__(self, state, batch, key):
    return self.jitted(state, batch, key, *self.extra)


def make_train_step(model, optimizer, config: ml_collections.ConfigDict, mesh,
                    runs: list[Member], with_vertex_loss: bool = False) -> StepFn:
  """The jitted data-parallel update, state donated.

  One plain run: state replicated, batch split over `data`. A sweep: states
  stacked on a leading member axis split over `member`, the update mapped over
  it with `jax.vmap` (per-member key, settings and point mask; shared batch).
  """
  repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  common = dict(model=model, optimizer=optimizer, loss_cfg=config.loss,
                with_vertex_loss=with_vertex_loss,
                points_per_row=bool(config.train.get("points_per_row", False)))
  if not is_sweep(config):
    run, = runs
    step = functools.partial(train_step, sampler=run.settings, point_mask=None,
                             num_points=run.num_points, **common)
    return StepFn(jax.jit(step, in_shardings=(repl, data_sh, repl),
                          out_shardings=(repl, repl), donate_argnums=0))
  settings, mask, k_max = stacked_settings(runs)
  mem = sharding.member_sharded(mesh)
  step = jax.vmap(functools.partial(train_step, num_points=k_max, **common),
                  in_axes=(0, None, 0, 0, 0))
  return StepFn(jax.jit(step, in_shardings=(mem, data_sh, mem, mem, mem),
                        out_shardings=(mem, mem), donate_argnums=0),
                (jax.device_put(settings, mem), jax.device_put(mask, mem)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

  A config with a `sweep` section trains every member as one program, each
  in <workdir>/members/<name>/ (see `members.py`).

  Returns:
    The last validation metrics; for a sweep, {member name: metrics}.

  Raises:
    TrainingDiverged: a NaN/inf loss (nothing saved past the last good step).
    DiskFull: a write failed for lack of space (earlier checkpoints intact).
  """
  try:
    return _train_and_evaluate(config, workdir)
  except Exception as e:
    if not disk_space.is_no_space(e):
      raise
    workdir = os.path.abspath(os.path.expanduser(workdir))
    folders = [run.workdir for run in members_of(config, workdir)]
    common = set.intersection(*(set(checkpoint.complete_steps(f)) for f in folders))
    last = (f"step {max(common)}, intact" if common else "none")
    detail = f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else ""
    raise DiskFull(f"no space left on device while writing to {workdir}{detail}; last complete "
                   f"checkpoint: {last}. Free space and run the same command to resume.") from None


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  config = config.copy_and_resolve_references()
  # Saved with the checkpoint: evaluate.py must find the corpus from any folder.
  config.data.root = os.path.abspath(os.path.expanduser(config.data.root))
  speech_setup.resolve(config)
  tc = config.train
  workdir = os.path.abspath(os.path.expanduser(workdir))
  sweep = is_sweep(config)
  try:
    runs = members_of(config, workdir)
  except ValueError as e:
    raise InputError("", str(e)) from None
  for run in runs:
    os.makedirs(run.workdir, exist_ok=True)

  # ---------------------------------------------------------------- data ----
  ensure_corpus(config.data)
  corpus = Corpus(config.data)
  n_proc, proc = jax.process_count(), jax.process_index()

  # ---------------------------------------------------------------- mesh ----
  member_devices = int(config.sweep.member_devices) if sweep else 1
  try:
    mesh = sharding.make_mesh(member_devices)
  except ValueError as e:
    raise InputError("", str(e)) from None
  if len(runs) % member_devices:
    raise InputError("", f"sweep.member_devices={member_devices} must divide the "
                     f"{len(runs)} members")
  n_data = mesh.shape[sharding.DATA]
  for name, size in (("train.global_batch_size", tc.global_batch_size),
                     ("eval.batch_size", config.eval.batch_size)):
    if size % n_data:
      raise InputError("", f"{name}={size} must be a multiple of the {n_data} devices "
                       "of the data axis")

  # --------------------------------------------------------------- input ----
  buckets = tuple(config.data.bucket_frames)
  train_data = Batcher(corpus, "train", tc.global_batch_size, buckets, train=True,
                       seed=config.seed, process_index=proc, process_count=n_proc)
  val_data = Batcher(corpus, "val", config.eval.batch_size, buckets, train=False,
                     process_index=proc, process_count=n_proc)

  # --------------------------------------------------------------- model ----
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(tc, speech_setup.frozen_parameters(config.model))
  root_key = jax.random.key(config.seed)
  state = create_state(model, optimizer, config.data, jax.random.fold_in(root_key, 0), mesh,
                       initial=speech_setup.initial_weights(config))
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))  # one run's checkpoint
  meta = {"num_vertices": corpus.assets.num_vertices, "num_faces": corpus.assets.num_faces,
          "topology": corpus.assets.fingerprint, "styles": corpus.train_subjects}

  # ---------------------------------------------------------- checkpoint ----
  mngrs = [checkpoint.manager(run.workdir, tc.keep_checkpoints) for run in runs]
  logs = [MetricsLog(os.path.join(run.workdir, "metrics.jsonl")) for run in runs]
  start, states = checkpoint.restore_newest_readable(
      mngrs, state, on_skip=lambda msg: print(msg, flush=True) if proc == 0 else None,
      may_rename=proc == 0, barrier=functools.partial(_sync, "set_aside"))
  if not start:
    states = [state] * len(runs)
  mean_motion_path = os.path.join(runs[0].workdir, "mean_motion.npy")
  if os.path.isfile(mean_motion_path):
    mean_motion = np.load(mean_motion_path)
  else:
    mean_motion = evaluation.mean_training_motion(corpus)
  if proc == 0:
    if sweep:
      fileio.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    for run, log in zip(runs, logs):
      log.truncate_after(start)
      fileio.write_text(os.path.join(run.workdir, "config.json"),
                        run.config.to_json_best_effort(indent=2))
      run_folder.save_mesh(run.workdir, corpus.assets,
                           {s: corpus.templates[s] for s in corpus.train_subjects})
      path = os.path.join(run.workdir, "mean_motion.npy")
      if not os.path.isfile(path):
        with fileio.atomic_path(path) as tmp:
          np.save(tmp, mean_motion)
  if sweep:
    state = stack(states, mesh)
    sample_key = stack([sample_key_of(r.config) for r in runs], mesh)
    take = jax.jit(lambda s, i: jax.tree.map(lambda x: x[i], s),
                   out_shardings=sharding.replicated(mesh))
    member_state = lambda i: take(state, np.int32(i))  # noqa: E731
  else:
    state = states[0]
    sample_key = sample_key_of(config)
    member_state = lambda i: state  # noqa: E731
  del states

  # --------------------------------------------------------- update step ----
  step_fn = make_train_step(model, optimizer, config, mesh, runs)
  vertex_every = int(config.loss.vertex_every)
  vertex_step_fn = make_train_step(model, optimizer, config, mesh, runs, with_vertex_loss=True)
  decoder = evaluation.make_decoder(model, decode_budget(config))
  lr = learning_rate_schedule(tc)
  scale = report.scales(config.scale)
  rows = [run.name or "model" for run in runs]

  def validate() -> list[dict]:
    params = {row: member_state(i).params for i, row in enumerate(rows)}
    result = evaluation.evaluate_rows(decoder, params, val_data, mesh, mean_motion)
    return [{f"val_{k}": v for k, v in result[row].items()} for row in rows]

  def per_run(metrics) -> list[dict]:
    values = jax.device_get(metrics)
    if not sweep:
      return [{k: float(v) for k, v in values.items()}]
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(runs))]

  # ---------------------------------------------------------------- loop ----
  progress = Progress(tc.num_steps, start)
  progress.message(f"{n_params:,} parameters"
                   + (f" x {len(runs)} sweep members ({', '.join(rows)})" if sweep else "")
                   + f" on {mesh.devices.size} device(s) x {n_proc} host(s); "
                   f"{len(train_data.sequences)} training sequences, "
                   f"{train_data.batches_per_epoch()} batches/epoch; "
                   + (f"resuming at step {start}" if start else "starting"))
  last_good = start
  vals: list[dict] = [{} for _ in runs]
  frames = 0
  batches = prefetch(train_data.forever(start_batch=start), int(tc.prefetch))
  in_flight: collections.deque = collections.deque()
  for step in range(start + 1, tc.num_steps + 1):
    local = next(batches)
    frames += int(local["frame_mask"].sum()) * n_proc
    use_vertex_loss = vertex_every > 0 and step % vertex_every == 0
    state, metrics = (vertex_step_fn if use_vertex_loss else step_fn)(
        state, sharding.global_batch(local, mesh), sample_key)
    # Dispatch runs at most train.steps_in_flight steps ahead. On XLA:CPU a
    # queued step holds its batch and its working memory while it waits (two
    # in flight: 3.4 GB against 1.9 GB for the default's steps), so the CPU
    # default waits for each step; batches are assembled in the background
    # (prefetch) either way.
    in_flight.append(metrics["loss"])
    while len(in_flight) >= max(1, int(tc.get("steps_in_flight", 1))):
      jax.block_until_ready(in_flight.popleft())
    is_eval = step % tc.eval_every == 0 or step == tc.num_steps
    if step % tc.log_every == 0 or is_eval:
      values = per_run(metrics)
      for run, v in zip(runs, values):
        if not np.isfinite(v["loss"]):
          for m in mngrs:
            m.wait_until_finished()
          who = f"sweep member {run.name!r}: " if sweep else ""
          raise TrainingDiverged(
              f"{who}loss is {v['loss']} at step {step}; stopped without saving. The last good "
              f"checkpoint (step {last_good}) of every run in {workdir} is intact.")
      losses = " ".join(f"{v['loss']:.4f}" for v in values)
      progress.report(step, f"loss {losses}", frames * len(runs))
      frames = 0
      for v, log in zip(values, logs):
        v["learning_rate"] = float(lr(step))
        if proc == 0:
          log.write(step, v)
    if is_eval:
      # Refuse a save the disk cannot hold before writing any of it.
      disk_space.check_space([run.workdir for run in runs], state_bytes)
      vals = validate()
      for i, (row, val, log, mngr) in enumerate(zip(rows, vals, logs, mngrs)):
        if proc == 0:
          log.write(step, val)
        progress.message(f"step {step}" + (f" {row}" if sweep else "") + ": " + " ".join(
            f"{k} {v * scale[k[4:]]:.4f}" for k, v in val.items()) + " (reporting scale)")
        # A member killed a save ahead of the others already holds this step.
        if step not in mngr.all_steps():
          if len(mngrs) > 1 and jax.process_count() > 1:
            # Orbax's multi-host save barriers share their names across
            # managers: one member's save must finish before the next starts.
            for m in mngrs:
              m.wait_until_finished()
          checkpoint.save(mngr, step, member_state(i), runs[i].config, meta, metrics=val)
      last_good = step
  for m in mngrs:
    m.wait_until_finished()
    m.close()
  return {row: val for row, val in zip(rows, vals)} if sweep else vals[0]
