"""train_and_evaluate(config, workdir): the one training loop, CPU to pod, for a population
of runs (one run is a population of one; a sweep, members x seeds)."""

from __future__ import annotations

import collections
import dataclasses
import functools
import multiprocessing
import os
from concurrent import futures
from typing import Callable

import jax
import ml_collections
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher, prefetch, zipped
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference.decoder import decode_budget
from mmtalker_jax.models.registry import build_model
from mmtalker_jax.models.speech import setup as speech_setup
from mmtalker_jax.training import checkpoint, disk_space, evaluation, report, run_folder, sharding
from mmtalker_jax.training import population
from mmtalker_jax.training.population import Replica, stack, stacked_settings
from mmtalker_jax.training.population import sample_key as sample_key_of
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
    print(f"generating SynthTalk at {root} ...", flush=True)
    # In a process of its own (spawned: this one runs JAX's threads): the
    # generator's numba and scipy would stay resident in the trainer for the
    # whole run (about 120 MB), and importing them adds ~2 s to every start.
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(1, mp_context=context) as pool:
      pool.submit(_generate_synthtalk, root, data_cfg.to_dict()).result()
  _sync("synthtalk")


def _generate_synthtalk(root: str, data: dict) -> None:
  from mmtalker_jax.data.synthetic import corpus as synthtalk

  spec = synthtalk.spec_from_config(ml_collections.ConfigDict(data))
  synthtalk.generate(root, spec)  # the folder appears when whole


@dataclasses.dataclass
class StepFn:
  """The jitted update, called as step(state, batch, key); `extra` holds the
  replicas' settings, point masks and batch slots (placed on the member axis)."""
  jitted: Callable
  extra: tuple = ()

  def __call__(self, state, batch, key):
    return self.jitted(state, batch, key, *self.extra)


def make_train_step(model, optimizer, config: ml_collections.ConfigDict, mesh,
                    replicas: list[Replica], with_vertex_loss: bool = False) -> StepFn:
  """The jitted data-parallel update of a population, state donated.

  States and keys are stacked on a leading replica axis split over `member`;
  the batch is split over `data`. The update is mapped over the replicas with
  `jax.vmap` (per-replica key, sampler settings and point mask); a population
  of one runs `train_step` itself on the squeezed state, the program of an
  unmapped run. With one seed the batch [b, ...] is shared; with several it
  is [S, b, ...] (`pipeline.zipped`) and each replica trains on its seed's.
  """
  common = dict(model=model, optimizer=optimizer, loss_cfg=config.loss,
                with_vertex_loss=with_vertex_loss,
                points_per_row=bool(config.train.get("points_per_row", False)))
  seeds = sorted({r.seed for r in replicas})
  slots = np.asarray([seeds.index(r.seed) for r in replicas], np.int32)
  stacked = len(seeds) > 1

  def own_batch(batch, slot):
    return jax.tree.map(lambda x: x[slot], batch) if stacked else batch

  if len(replicas) == 1:
    run, = replicas
    one = functools.partial(train_step, sampler=run.settings, point_mask=None,
                            num_points=run.num_points, **common)

    def mapped(state, batch, key, slot):
      squeeze = functools.partial(jax.tree.map, lambda x: x[0])
      out = one(squeeze(state), own_batch(batch, slot[0]), key[0])
      return jax.tree.map(lambda x: x[None], out)
    extra = (slots,)
  else:
    settings, mask, k_max = stacked_settings(replicas)
    one = functools.partial(train_step, num_points=k_max, **common)

    def each(state, batch, key, slot, settings, mask):
      return one(state, own_batch(batch, slot), key, settings, mask)
    mapped = jax.vmap(each, in_axes=(0, None, 0, 0, 0, 0))
    extra = (slots, settings, mask)
  mem = sharding.member_sharded(mesh)
  data = sharding.seed_batches_sharded(mesh) if stacked else sharding.batch_sharded(mesh)
  return StepFn(jax.jit(mapped, in_shardings=(mem, data, mem) + (mem,) * len(extra),
                        out_shardings=(mem, mem), donate_argnums=0),
                tuple(jax.device_put(x, mem) for x in extra))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

  A config with a `sweep` section trains its members x seeds, each an
  ordinary run under <workdir>/members/ (see `population.py`), in groups of
  `sweep.group_size` replicas per program.

  Returns:
    The last validation metrics; for a sweep, {replica name: metrics}.

  Raises:
    TrainingDiverged: a NaN/inf loss (nothing saved past the last good step).
    DiskFull: a write failed for lack of space (earlier checkpoints intact).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  config = config.copy_and_resolve_references()
  # Saved with the checkpoint: evaluate.py must find the corpus from any folder.
  config.data.root = os.path.abspath(os.path.expanduser(config.data.root))
  speech_setup.resolve(config)
  try:
    replicas = population.replicas_of(config, workdir)
    programs = population.groups(config, replicas)
  except ValueError as e:
    raise InputError("", str(e)) from None
  if population.is_sweep(config) and jax.process_index() == 0:
    # The sweep's own config (members, seeds, reference) beside its replicas.
    os.makedirs(workdir, exist_ok=True)
    fileio.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
  try:
    results = {}
    for group in programs:
      results.update(_train_and_evaluate(config, workdir, group))
  except Exception as e:
    if not disk_space.is_no_space(e):
      raise
    common = set.intersection(*(set(checkpoint.complete_steps(r.workdir)) for r in replicas))
    last = (f"step {max(common)}, intact" if common else "none")
    detail = f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else ""
    raise DiskFull(f"no space left on device while writing to {workdir}{detail}; last complete "
                   f"checkpoint: {last}. Free space and run the same command to resume.") from None
  return results if population.is_sweep(config) else results[replicas[0].name]


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        replicas: list[Replica]) -> dict[str, dict]:
  """Trains one program's replicas; returns {replica name: last validation metrics}.

  `config` is resolved (`train_and_evaluate`); each replica's is its own.
  """
  tc = config.train
  for run in replicas:
    os.makedirs(run.workdir, exist_ok=True)

  # ---------------------------------------------------------------- data ----
  ensure_corpus(config.data)
  corpus = Corpus(config.data)
  n_proc, proc = jax.process_count(), jax.process_index()

  # ---------------------------------------------------------------- mesh ----
  member_devices = population.member_devices(config)
  try:
    mesh = sharding.make_mesh(member_devices)
  except ValueError as e:
    raise InputError("", str(e)) from None
  if len(replicas) % member_devices:
    raise InputError("", f"sweep.member_devices={member_devices} must divide the "
                     f"{len(replicas)} replicas of a program (sweep.group_size)")
  n_data = mesh.shape[sharding.DATA]
  for name, size in (("train.global_batch_size", tc.global_batch_size),
                     ("eval.batch_size", config.eval.batch_size)):
    if size % n_data:
      raise InputError("", f"{name}={size} must be a multiple of the {n_data} devices "
                       "of the data axis")

  # --------------------------------------------------------------- input ----
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  buckets = tuple(config.data.bucket_frames)
  seeds = sorted({r.seed for r in replicas})
  train_data = [Batcher(corpus, "train", tc.global_batch_size, buckets, train=True,
                        seed=seed, process_index=proc, process_count=n_proc,
                        key_inputs=model.key_inputs) for seed in seeds]
  val_data = Batcher(corpus, "val", config.eval.batch_size, buckets, train=False,
                     process_index=proc, process_count=n_proc, key_inputs=model.key_inputs)

  # --------------------------------------------------------------- model ----
  optimizer = make_optimizer(tc, speech_setup.frozen_parameters(config.model))
  initial = speech_setup.initial_weights(config)
  inits = {seed: create_state(model, optimizer, config.data,
                              jax.random.fold_in(jax.random.key(seed), 0), mesh, initial=initial)
           for seed in seeds}
  one = inits[seeds[0]]
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(one.params))
  state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(one))  # one run's checkpoint
  meta = {"num_vertices": corpus.assets.num_vertices, "num_faces": corpus.assets.num_faces,
          "topology": corpus.assets.fingerprint, "styles": corpus.train_subjects}

  # ---------------------------------------------------------- checkpoint ----
  mngrs = [checkpoint.manager(run.workdir, tc.keep_checkpoints) for run in replicas]
  logs = [MetricsLog(os.path.join(run.workdir, "metrics.jsonl")) for run in replicas]
  start, states = checkpoint.restore_newest_readable(
      mngrs, one, on_skip=lambda msg: print(msg, flush=True) if proc == 0 else None,
      may_rename=proc == 0, barrier=functools.partial(_sync, "set_aside"))
  if not start:
    states = [inits[run.seed] for run in replicas]
  del inits, one
  mean_motion_path = os.path.join(replicas[0].workdir, "mean_motion.npy")
  if os.path.isfile(mean_motion_path):
    mean_motion = np.load(mean_motion_path)
  else:
    mean_motion = evaluation.mean_training_motion(corpus)
  if proc == 0:
    for run, log in zip(replicas, logs):
      log.truncate_after(start)
      fileio.write_text(os.path.join(run.workdir, "config.json"),
                        run.config.to_json_best_effort(indent=2))
      run_folder.save_mesh(run.workdir, corpus.assets,
                           {s: corpus.templates[s] for s in corpus.train_subjects})
      path = os.path.join(run.workdir, "mean_motion.npy")
      if not os.path.isfile(path):
        with fileio.atomic_path(path) as tmp:
          np.save(tmp, mean_motion)
  state = stack(states, mesh)
  sample_key = stack([sample_key_of(r.config) for r in replicas], mesh)
  take = jax.jit(lambda s, i: jax.tree.map(lambda x: x[i], s),
                 out_shardings=sharding.replicated(mesh))
  del states

  # --------------------------------------------------------- update step ----
  step_fn = make_train_step(model, optimizer, config, mesh, replicas)
  vertex_every = int(config.loss.vertex_every)
  vertex_step_fn = make_train_step(model, optimizer, config, mesh, replicas, with_vertex_loss=True)
  decoder = evaluation.make_decoder(model, decode_budget(config))
  lr = learning_rate_schedule(tc)
  scale = report.scales(config.scale)
  rows = [run.name for run in replicas]
  several = len(replicas) > 1

  def validate() -> list[dict]:
    params = {row: take(state, np.int32(i)).params for i, row in enumerate(rows)}
    result = evaluation.evaluate_rows(decoder, params, val_data, mesh, mean_motion)
    return [{f"val_{k}": v for k, v in result[row].items()} for row in rows]

  def per_run(metrics) -> list[dict]:
    values = jax.device_get(metrics)
    return [{k: float(v[i]) for k, v in values.items()} for i in range(len(replicas))]

  # ---------------------------------------------------------------- loop ----
  progress = Progress(tc.num_steps, start)
  progress.message(f"{n_params:,} parameters"
                   + (f" x {len(replicas)} replicas ({', '.join(rows)})" if several else "")
                   + f" on {mesh.devices.size} device(s) x {n_proc} host(s); "
                   f"{len(train_data[0].sequences)} training sequences, "
                   f"{train_data[0].batches_per_epoch()} batches/epoch; "
                   + (f"resuming at step {start}" if start else "starting"))
  last_good = start
  vals: list[dict] = [{} for _ in replicas]
  frames = 0
  batches = prefetch(zipped(train_data, start_batch=start), int(tc.prefetch))
  stacked = len(train_data) > 1
  in_flight: collections.deque = collections.deque()
  for step in range(start + 1, tc.num_steps + 1):
    local = next(batches)
    frames += int(local["frame_mask"].sum()) * n_proc
    use_vertex_loss = vertex_every > 0 and step % vertex_every == 0
    state, metrics = (vertex_step_fn if use_vertex_loss else step_fn)(
        state, sharding.global_batch(local, mesh, stacked), sample_key)
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
      for run, v in zip(replicas, values):
        if not np.isfinite(v["loss"]):
          for m in mngrs:
            m.wait_until_finished()
          who = f"sweep replica {run.name!r}: " if run.member else ""
          raise TrainingDiverged(
              f"{who}loss is {v['loss']} at step {step}; stopped without saving. The last good "
              f"checkpoint (step {last_good}) of every run in {workdir} is intact.")
      losses = " ".join(f"{v['loss']:.4f}" for v in values)
      progress.report(step, f"loss {losses}", frames * len(replicas) // len(train_data))
      frames = 0
      for v, log in zip(values, logs):
        v["learning_rate"] = float(lr(step))
        if proc == 0:
          log.write(step, v)
    if is_eval:
      # Refuse a save the disk cannot hold before writing any of it.
      disk_space.check_space([run.workdir for run in replicas], state_bytes)
      vals = validate()
      for i, (row, val, log, mngr) in enumerate(zip(rows, vals, logs, mngrs)):
        if proc == 0:
          log.write(step, val)
        progress.message(f"step {step}" + (f" {row}" if several else "") + ": " + " ".join(
            f"{k} {v * scale[k[4:]]:.4f}" for k, v in val.items()) + " (reporting scale)")
        # A replica killed a save ahead of the others already holds this step.
        if step not in mngr.all_steps():
          if len(mngrs) > 1 and jax.process_count() > 1:
            # Orbax's multi-host save barriers share their names across
            # managers: one replica's save must finish before the next starts.
            for m in mngrs:
              m.wait_until_finished()
          checkpoint.save(mngr, step, take(state, np.int32(i)), replicas[i].config, meta,
                          metrics=val)
      last_good = step
  for m in mngrs:
    m.wait_until_finished()
    m.close()
  return dict(zip(rows, vals))
