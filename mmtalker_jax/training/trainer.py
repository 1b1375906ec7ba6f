"""train_and_evaluate(config, workdir): the one training loop, CPU to pod."""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher, prefetch
from mmtalker_jax.data.synthetic import corpus as synthtalk
from mmtalker_jax.errors import InputError
from mmtalker_jax.models.mmtalker import build_model
from mmtalker_jax.models.sampler import sampler_settings
from mmtalker_jax.training import checkpoint, evaluation, report, sharding
from mmtalker_jax.training.optimizer import learning_rate_schedule, make_optimizer
from mmtalker_jax.training.progress import MetricsLog, Progress
from mmtalker_jax.training.state import create_state
from mmtalker_jax.training.step import train_step


class TrainingDiverged(RuntimeError):
  """The loss became NaN or inf."""


def ensure_corpus(data_cfg: ml_collections.ConfigDict) -> None:
  """Generates SynthTalk at data.root when it is missing and the config allows it."""
  root = os.path.expanduser(data_cfg.root)
  if os.path.isdir(root):
    return
  if not data_cfg.synthetic.enabled:
    raise InputError(root, "corpus folder not found (see README: preparing data)")
  if jax.process_index() == 0:
    print(f"generating SynthTalk at {root} ...", flush=True)
    synthtalk.generate(root, synthtalk.spec_from_config(data_cfg))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("synthtalk")


def make_train_step(model, optimizer, config: ml_collections.ConfigDict, mesh,
                    with_vertex_loss: bool = False):
  """The jitted data-parallel update: state replicated, batch split, state donated."""
  repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(
      functools.partial(train_step, model=model, optimizer=optimizer, loss_cfg=config.loss,
                        num_points=int(config.sampler.num_points),
                        sampler=sampler_settings(config.sampler),
                        with_vertex_loss=with_vertex_loss),
      in_shardings=(repl, data_sh, repl), out_shardings=(repl, repl), donate_argnums=0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns:
    The last validation metrics.
  """
  config = config.copy_and_resolve_references()
  # Saved with the checkpoint: evaluate.py must find the corpus from any folder.
  config.data.root = os.path.abspath(os.path.expanduser(config.data.root))
  tc = config.train
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)

  try:
    sampler_settings(config.sampler)
  except ValueError as e:
    raise InputError("", str(e)) from None

  # ---------------------------------------------------------------- data ----
  ensure_corpus(config.data)
  corpus = Corpus(config.data)
  n_proc, proc = jax.process_count(), jax.process_index()

  # ---------------------------------------------------------------- mesh ----
  mesh = sharding.make_mesh()
  n_dev = mesh.devices.size
  for name, size in (("train.global_batch_size", tc.global_batch_size),
                     ("eval.batch_size", config.eval.batch_size)):
    if size % n_dev:
      raise InputError("", f"{name}={size} must be a multiple of the {n_dev} devices")

  # --------------------------------------------------------------- input ----
  buckets = tuple(config.data.bucket_frames)
  train_data = Batcher(corpus, "train", tc.global_batch_size, buckets, train=True,
                       seed=config.seed, process_index=proc, process_count=n_proc)
  val_data = Batcher(corpus, "val", config.eval.batch_size, buckets, train=False,
                     process_index=proc, process_count=n_proc)

  # --------------------------------------------------------------- model ----
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(tc)
  root_key = jax.random.key(config.seed)
  state = create_state(model, optimizer, config.data, jax.random.fold_in(root_key, 0), mesh)
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(state.params))
  meta = {"num_vertices": corpus.assets.num_vertices, "num_faces": corpus.assets.num_faces,
          "topology": corpus.assets.fingerprint, "styles": corpus.train_subjects}

  # ---------------------------------------------------------- checkpoint ----
  mngr = checkpoint.manager(workdir, tc.keep_checkpoints)
  log = MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  start = mngr.latest_step() or 0
  if start:
    state = checkpoint.restore_state(mngr, start, state)
  if proc == 0:
    log.truncate_after(start)
    fileio.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    checkpoint.save_mesh(workdir, corpus.assets,
                         {s: corpus.templates[s] for s in corpus.train_subjects})
  mean_motion_path = os.path.join(workdir, "mean_motion.npy")
  if os.path.isfile(mean_motion_path):
    mean_motion = np.load(mean_motion_path)
  else:
    mean_motion = evaluation.mean_training_motion(corpus)
    if proc == 0:
      with fileio.atomic_path(mean_motion_path) as tmp:
        np.save(tmp, mean_motion)

  # --------------------------------------------------------- update step ----
  step_fn = make_train_step(model, optimizer, config, mesh)
  vertex_every = int(config.loss.vertex_every)
  vertex_step_fn = make_train_step(model, optimizer, config, mesh, with_vertex_loss=True)
  decoder = evaluation.make_decoder(model, config.decode.chunk_frames)
  sample_key = jax.random.fold_in(root_key, 1)
  lr = learning_rate_schedule(tc)
  scale = report.scales(config.scale)

  def validate() -> dict:
    result = evaluation.evaluate(decoder, state.params, val_data, mesh, mean_motion)
    return {f"val_{k}": v for k, v in result["model"].items()}

  # ---------------------------------------------------------------- loop ----
  progress = Progress(tc.num_steps, start)
  progress.message(f"{n_params:,} parameters on {n_dev} device(s) x {n_proc} host(s); "
                   f"{len(train_data.sequences)} training sequences, "
                   f"{train_data.batches_per_epoch()} batches/epoch; "
                   + (f"resuming at step {start}" if start else "starting"))
  last_good = start
  val = {}
  frames = 0
  batches = prefetch(train_data.forever(start_batch=start), int(tc.prefetch))
  for step in range(start + 1, tc.num_steps + 1):
    local = next(batches)
    frames += int(local["frame_mask"].sum()) * n_proc
    use_vertex_loss = vertex_every > 0 and step % vertex_every == 0
    state, metrics = (vertex_step_fn if use_vertex_loss else step_fn)(
        state, sharding.global_batch(local, mesh), sample_key)
    is_eval = step % tc.eval_every == 0 or step == tc.num_steps
    if step % tc.log_every == 0 or is_eval:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not np.isfinite(values["loss"]):
        mngr.wait_until_finished()
        raise TrainingDiverged(
            f"loss is {values['loss']} at step {step}; stopped without saving. The last good "
            f"checkpoint (step {last_good}) in {workdir} is intact.")
      values["learning_rate"] = float(lr(step))
      progress.report(step, f"loss {values['loss']:.4f}", frames)
      frames = 0
      if proc == 0:
        log.write(step, values)
    if is_eval:
      val = validate()
      if proc == 0:
        log.write(step, val)
      progress.message(f"step {step}: " + " ".join(
          f"{k} {v * scale[k[4:]]:.4f}" for k, v in val.items()) + " (reporting scale)")
      checkpoint.save(mngr, step, state, config, meta, metrics=val)
      last_good = step
  mngr.wait_until_finished()
  mngr.close()
  return val
