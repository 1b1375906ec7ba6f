"""Training: one step, determinism, kill-and-resume, data parallelism, bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mmtalker_jax import losses
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.models.mmtalker import build_model
from mmtalker_jax.models.sampler import sampler_settings
from mmtalker_jax.training import checkpoint
from mmtalker_jax.training.state import TrainState
from mmtalker_jax.training.step import compute_losses, train_step
from tests.devices import run_on_eight_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(script, *args, env=None, timeout=300):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


def train_args(workdir, root, steps=40, every=20):
  return ["--config", "configs/tiny.py", "--workdir", str(workdir),
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          f"--config.train.eval_every={every}", "--config.train.log_every=10"]


def test_one_train_step_on_made_up_data(tiny_config, data_cfg):
  corpus = Corpus(data_cfg)
  batch = next(Batcher(corpus, "train", 2, data_cfg.bucket_frames, train=True).epoch(0))
  batch["vertices"] = batch["vertices"] + np.random.default_rng(0).normal(
      0, 1e-3, batch["vertices"].shape).astype(np.float32)
  model = build_model(tiny_config, corpus.assets, len(corpus.train_subjects))
  x = [batch[k] for k in ("audio", "template", "style", "frame_mask")]
  params = jax.jit(model.init)({"params": jax.random.key(0)}, *x)["params"]
  optimizer = optax.adam(1e-3)
  state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  step = jax.jit(lambda s, b: train_step(s, b, jax.random.key(0),
                                         sampler_settings(tiny_config.sampler), model=model,
                                         optimizer=optimizer, loss_cfg=tiny_config.loss,
                                         num_points=32))
  new, metrics = step(state, batch)
  assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
  # The output layer starts at zero, so step 1 moves it and the sampling logits...
  assert jnp.any(new.params["regressor"]["out"]["kernel"] != params["regressor"]["out"]["kernel"])
  assert jnp.any(new.params["face_logits"] != params["face_logits"])
  # ...and from step 2 on every parameter learns.
  new, _ = step(new, batch)
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params, new.params)
  assert all(jax.tree_util.tree_leaves(changed)), changed


def tiny_model_and_batch(tiny_config, data_cfg):
  """(batch of 2 training sequences, the tiny model, its initial parameters)."""
  corpus = Corpus(data_cfg)
  batch = next(Batcher(corpus, "train", 2, data_cfg.bucket_frames, train=True).epoch(0))
  model = build_model(tiny_config, corpus.assets, len(corpus.train_subjects))
  x = [batch[k] for k in ("audio", "template", "style", "frame_mask")]
  params = jax.jit(model.init)({"params": jax.random.key(0)}, *x)["params"]
  return batch, model, params


def test_scheduled_vertex_loss_adds_the_all_vertex_mse(tiny_config, data_cfg):
  batch, model, params = tiny_model_and_batch(tiny_config, data_cfg)
  fn = jax.jit(lambda p: compute_losses(p, model, batch, jax.random.key(0), tiny_config.loss, 32,
                                        sampler_settings(tiny_config.sampler),
                                        with_vertex_loss=True))
  total, parts = fn(params)
  # At initialisation the prediction is the template: the all-vertex MSE is the
  # mean squared true displacement over real frames, in output units.
  truth = (batch["vertices"] - batch["template"][:, None]) / model.displacement_scale
  expected = (np.sum(truth ** 2, -1).mean(-1) * batch["frame_mask"]).sum() / batch["frame_mask"].sum()
  assert float(parts["vertex_mse"]) == pytest.approx(expected, rel=1e-4)
  cfg = tiny_config.loss
  assert float(total) == pytest.approx(cfg.point_weight * float(parts["point_mse"]) +
                                       cfg.velocity_weight * float(parts["velocity"]) +
                                       cfg.vertex_weight * float(parts["vertex_mse"]), rel=1e-5)


def assert_same_value_and_gradient(reference, other):
  """(loss, grads) pairs agree: the loss to 1e-5, every gradient against the
  largest one (some, attention key biases, are zero up to rounding)."""
  (v0, g0), (v1, g1) = reference, other
  assert float(v0) > 0
  np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
  scale = max(float(np.abs(a).max()) for a in jax.tree_util.tree_leaves(g0))
  assert scale > 0
  for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5 * scale)


def test_chunked_vertex_loss_has_the_same_value_and_gradient(tiny_config, data_cfg):
  """The all-vertex MSE over chunks of frames under remat equals the one-shot loss."""
  from mmtalker_jax.training.step import vertex_mse
  batch, model, params = tiny_model_and_batch(tiny_config, data_cfg)
  # Move every parameter off its start (the output layer starts at zero), so
  # predictions differ from the template.
  params = jax.tree_util.tree_map(lambda p: p + 0.01 * jnp.sin(jnp.arange(p.size).reshape(p.shape)),
                                  params)
  unit = 1.0 / model.displacement_scale
  t = batch["frame_mask"].shape[1]
  assert batch["frame_mask"].sum(1).min() < t  # padded frames included

  def loss(p, chunk):
    encoded = model.apply({"params": p}, batch["audio"], batch["template"], batch["style"],
                          batch["frame_mask"], method=model.encode)
    return vertex_mse(p, model, encoded, batch, unit, chunk)

  fns = {c: jax.jit(jax.value_and_grad(lambda p, c=c: loss(p, c)))
         for c in (0, 24)}  # 24 does not divide the 64-frame bucket
  (v0, g0), (v1, g1) = fns[0](params), fns[24](params)
  assert_same_value_and_gradient((v0, g0), (v1, g1))


def test_point_loss_decoded_in_chunks_has_the_same_value_and_gradient():
  """loss.point_chunk_frames: the sampled points decoded a chunk of frames at a
  time under remat give the one-shot loss and gradient, padded frames
  included. With predicted key motions: the regressor's path with and without
  them is the same, and the per-frame motion is a dict of arrays."""
  from tests import test_keymotion, test_model

  model = test_model.small_model(60).clone(key_motion="predicted")
  x = test_model.inputs(model, 2, 20)
  x["frame_mask"] = x["frame_mask"].at[1, 15:].set(0.0)
  track, motion = test_keymotion.key_batch(2, 20, 60)
  batch = {**x, "key_visemes": jnp.asarray(track),
           "vertices": jnp.asarray(np.asarray(x["template"])[:, None] + motion + 1e-4)}
  params = jax.jit(model.init)({"params": jax.random.key(0)}, x["audio"], x["template"],
                               x["style"], x["frame_mask"],
                               keys={"key_visemes": batch["key_visemes"]})["params"]
  params = test_model.randomize_output(params)

  def loss_and_grad(chunk):
    cfg = ml_collections.ConfigDict(dict(point_weight=1.0, velocity_weight=1.0,
                                         point_chunk_frames=chunk))
    fn = lambda p: compute_losses(p, model, batch, jax.random.key(0), cfg, 16,
                                  test_model.SAMPLER)[0]
    return jax.jit(jax.value_and_grad(fn))(params)

  (v0, g0), (v1, g1) = loss_and_grad(0), loss_and_grad(7)  # 7 does not divide 20
  assert_same_value_and_gradient((v0, g0), (v1, g1))


def test_points_per_row_draw_and_decode_each_row_on_its_own(tiny_config, data_cfg):
  """With train.points_per_row, each row draws its own points (from the key
  folded with its index) and is decoded, targeted and weighed exactly as a
  batch of that row alone with those points would be."""
  from mmtalker_jax.models.points import interpolate
  batch, model, params = tiny_model_and_batch(tiny_config, data_cfg)
  params = jax.tree_util.tree_map(lambda p: p + 0.01 * jnp.cos(jnp.arange(p.size).reshape(p.shape)),
                                  params)
  settings = sampler_settings(tiny_config.sampler)
  key, k = jax.random.key(3), 16
  apply = lambda *a, **kw: model.apply({"params": params}, *a, **kw)
  draw = jax.jit(lambda n, rows: apply(n, settings, rows, method=model.sample_points,
                                       rngs={"sample": key}), static_argnums=(0, 1))
  decode = jax.jit(lambda *a: apply(*a, method=model.decode))
  rows = draw(k, 2)
  assert rows.face_ids.shape == (2, k) and rows.bary.shape == (2, k, 3)
  assert rows.weights.shape == (2, k) and rows.log_p.shape == (2, k)
  assert np.any(np.asarray(rows.face_ids[0]) != np.asarray(rows.face_ids[1]))
  x = [batch[n] for n in ("audio", "template", "style", "frame_mask")]
  encoded = jax.jit(lambda: apply(*x, method=model.encode))()
  disp, at = decode(encoded, rows.face_ids, rows.bary, batch["frame_mask"])
  target = interpolate(batch["vertices"], model.assets.faces, rows.face_ids, rows.bary)
  # Row r's draw depends on r alone: more rows or fewer points leave it as it is.
  more = draw(k // 2, 3)
  np.testing.assert_array_equal(more.face_ids[:2], rows.face_ids[:, :k // 2])
  np.testing.assert_allclose(more.bary[:2], rows.bary[:, :k // 2])
  for r in range(2):
    one = jax.tree_util.tree_map(lambda v: v[r], rows)
    row = jax.tree_util.tree_map(lambda v: v[r:r + 1], encoded)
    d, a = decode(row, one.face_ids, one.bary, batch["frame_mask"][r:r + 1])
    np.testing.assert_allclose(disp[r], d[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(at[r], a[0], rtol=1e-6)
    t = interpolate(batch["vertices"][r:r + 1], model.assets.faces, one.face_ids, one.bary)
    np.testing.assert_allclose(target[r], t[0], rtol=1e-6)
  assert float(jnp.abs(disp).max()) > 0
  # The same weights in every row weigh as the shared [K] weights do.
  err = jnp.sum((disp - target) ** 2, -1)
  w = rows.weights[0]
  shared = losses.point_mse(disp, target, w, batch["frame_mask"])
  per_row = losses.point_mse(disp, target, jnp.stack([w, w]), batch["frame_mask"])
  assert float(per_row) == pytest.approx(float(shared), rel=1e-6) and float(shared) > 0
  expected = (np.asarray(err) * np.asarray(batch["frame_mask"])[..., None] * np.asarray(
      rows.weights)[:, None]).sum() / (batch["frame_mask"].sum() * k)
  got = losses.point_mse(disp, target, rows.weights, batch["frame_mask"])
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # The whole loss: finite, and its gradient reaches the sampling logits.
  fn = jax.jit(jax.grad(lambda p: compute_losses(
      p, model, batch, key, tiny_config.loss, k, settings, points_per_row=True)[0]))
  grads = fn(params)
  assert float(jnp.abs(grads["face_logits"]).max()) > 0
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.slow
def test_same_seed_same_metrics_and_kill_resume_matches(tmp_path, tiny_corpus_root):
  """A run SIGKILLed after a checkpoint, started again, ends exactly as one that never stopped.

  The killed run's first steps ran in another process than the reference run,
  so equal logs and parameters also show that the same seed gives the same numbers.
  """
  a, c = tmp_path / "a", tmp_path / "c"
  steps, every = 20, 10
  assert cli("train.py", *train_args(a, tiny_corpus_root, steps, every)).returncode == 0
  log_a = (a / "metrics.jsonl").read_text()
  assert len(log_a.splitlines()) == steps // 10 + steps // every

  proc = subprocess.Popen([sys.executable, "train.py", *train_args(c, tiny_corpus_root, steps, every)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (c / "checkpoints" / str(every)).is_dir() and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = sorted(int(p) for p in os.listdir(c / "checkpoints") if p.isdigit())
  assert killed_at and killed_at[-1] < steps, "the run finished before it could be killed"
  assert cli("train.py", *train_args(c, tiny_corpus_root, steps, every)).returncode == 0
  assert (c / "metrics.jsonl").read_text() == log_a
  params = []
  for run in (a, c):
    mngr = checkpoint.manager(str(run), 1, read_only=True)
    restored = mngr.restore(steps, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    params.append(restored["state"]["params"])
  for x, y in zip(jax.tree_util.tree_leaves(params[0]), jax.tree_util.tree_leaves(params[1])):
    np.testing.assert_array_equal(x, y)


DATA_PARALLEL = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    sys.path.insert(0, {root!r})
    from configs import tiny
    from mmtalker_jax.data.corpus import Corpus
    from mmtalker_jax.data.pipeline import Batcher
    from mmtalker_jax.models.mmtalker import build_model
    from mmtalker_jax.models.sampler import sampler_settings
    from mmtalker_jax.training.step import compute_losses
    assert jax.device_count() == 8
    cfg = tiny.get_config()
    cfg.model.update(audio_levels=1, gcn_blocks=1)  # the layout is the question, not the depth
    cfg.data.root = {corpus!r}
    cfg.data.cache_dir = {cache!r}
    corpus = Corpus(cfg.data)
    batch = next(Batcher(corpus, "train", 8, cfg.data.bucket_frames, train=True).epoch(0))
    model = build_model(cfg, corpus.assets, len(corpus.train_subjects))
    x = [batch[k] for k in ("audio", "template", "style", "frame_mask")]
    params = jax.jit(model.init)({{"params": jax.random.key(0)}}, *x)["params"]
    def loss_and_grad(devices):
      mesh = Mesh(np.asarray(devices), ("data",))
      data = {{k: jax.device_put(v, NamedSharding(mesh, P("data"))) for k, v in batch.items()}}
      p = jax.device_put(params, NamedSharding(mesh, P()))
      fn = jax.jit(jax.value_and_grad(lambda p, b: compute_losses(
          p, model, b, jax.random.key(3), cfg.loss, 64, sampler_settings(cfg.sampler))[0]))
      loss, grads = fn(p, data)
      assert len(data["audio"].sharding.device_set) == len(devices)
      return float(loss), jax.tree_util.tree_leaves(jax.device_get(grads))
    l8, g8 = loss_and_grad(jax.devices())
    l1, g1 = loss_and_grad(jax.devices()[:1])
    rel = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12)) for a, b in zip(g8, g1))
    hosts = [Batcher(corpus, "train", 8, cfg.data.bucket_frames, train=True, process_index=p,
                     process_count=4) for p in range(4)]
    rows = [next(h.epoch(0))["seq_index"].tolist() for h in hosts]
    print(json.dumps({{"l8": l8, "l1": l1, "rel": rel, "rows": rows,
                      "global": batch["seq_index"].tolist()}}))
""")


def test_eight_devices_match_one_device(tmp_path, tiny_corpus_root):
  out = run_on_eight_devices(DATA_PARALLEL.format(root=ROOT, corpus=tiny_corpus_root,
                                                  cache=str(tmp_path / "cache")),
                             tmp_path / "dp.py")
  # Same global batch: the loss agrees to float32 rounding, the gradients to 1e-4 relative.
  assert out["l8"] == pytest.approx(out["l1"], rel=1e-5)
  assert out["rel"] < 1e-4
  # Four hosts read four distinct quarters that make up the global batch.
  flat = [i for rows in out["rows"] for i in rows]
  assert flat == out["global"]
  assert all(len(r) == 2 for r in out["rows"])



def test_evaluate_prints_table_and_writes_json_and_predictions(trained_run, tmp_path):
  out = tmp_path / "results.json"
  proc = cli("evaluate.py", "--ckpt", str(trained_run), "--split", "val", "--out", str(out),
             "--save-pred", str(tmp_path / "pred"))
  assert proc.returncode == 0, proc.stderr
  assert "static template" in proc.stdout and "mean motion" in proc.stdout
  result = json.loads(out.read_text())
  assert set(result) == {"model", "static_template", "mean_motion", "scale", "split",
                         "sequences", "step", "long_seconds"}
  assert set(result["model"]) == {"lve", "eve", "fdd", "fdd_abs", "mve"}
  assert result["split"] == "val" and result["step"] == 20 and result["sequences"] == 2
  preds = sorted(os.listdir(tmp_path / "pred"))
  assert preds == ["SynthTalk_S01_sentence05_condition_SynthTalk_S01.npy",
                   "SynthTalk_S02_sentence05_condition_SynthTalk_S02.npy"]
  # Predictions have the truth's frames and vertices ([T, V*3], as the community writes them).
  corpus = Corpus(_run_data_cfg(trained_run))
  seqs = {s.name: s for s in corpus.split("val")}
  truths = [corpus.vertices(seqs[p.split("_condition_")[0]]) for p in preds]
  templates = [corpus.template(seqs[p.split("_condition_")[0]]) for p in preds]
  for p, truth in zip(preds, truths):
    assert np.load(tmp_path / "pred" / p).shape == (len(truth), truth.shape[1] * 3)
  # The static baseline is exactly zero motion: its MVE is the mean displacement of the truth.
  disp = np.concatenate([np.linalg.norm(g - t, axis=-1).ravel() for g, t in zip(truths, templates)])
  assert result["static_template"]["mve"] == pytest.approx(disp.mean(), rel=1e-5)


def _run_data_cfg(workdir):
  from ml_collections import ConfigDict
  return ConfigDict(json.loads((workdir / "config.json").read_text())["data"])


def _one_line_error(proc, *fragments):
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert any(all(f in l for f in fragments) for l in lines), proc.stderr[-2000:]


def test_evaluate_bad_checkpoints(trained_run, tmp_path):
  _one_line_error(cli("evaluate.py", "--ckpt", str(tmp_path / "missing")), "not found")
  (tmp_path / "empty").mkdir()
  _one_line_error(cli("evaluate.py", "--ckpt", str(tmp_path / "empty")), "empty", "no checkpoints/")
  (tmp_path / "empty" / "checkpoints").mkdir()
  _one_line_error(cli("evaluate.py", "--ckpt", str(tmp_path / "empty")), "no complete checkpoint")
  half = tmp_path / "half"
  (half / "checkpoints" / "7.orbax-checkpoint-tmp").mkdir(parents=True)
  _one_line_error(cli("evaluate.py", "--ckpt", str(half)), "no complete checkpoint")
  _one_line_error(cli("evaluate.py", "--ckpt", str(half / "checkpoints" / "7")), "not found")
  (half / "checkpoints" / "7").mkdir()
  _one_line_error(cli("evaluate.py", "--ckpt", str(half / "checkpoints" / "7")),
                  "incomplete or damaged checkpoint")
  _one_line_error(cli("evaluate.py", "--ckpt", str(half)), "incomplete or damaged checkpoint")


def test_evaluate_refuses_data_of_another_mesh(trained_run, tmp_path):
  from mmtalker_jax.data.synthetic import SynthSpec, generate
  other = tmp_path / "other"
  generate(other, SynthSpec(num_train_subjects=2, num_unseen_subjects=1, num_sentences=6,
                            min_seconds=1.0, max_seconds=2.0, vertex_spacing=0.09), workers=1)
  _one_line_error(cli("evaluate.py", "--ckpt", str(trained_run), "--data", str(other)),
                  "trained on a mesh of", "but the data's template has")


def test_evaluate_refuses_the_same_sizes_with_other_uvs(trained_run, tiny_corpus_root, tmp_path):
  import shutil
  other = tmp_path / "moved_uvs"
  shutil.copytree(tiny_corpus_root, other, ignore=shutil.ignore_patterns(".feature_cache"))
  obj = other / "template.obj"
  lines = obj.read_text().splitlines()
  k = next(i for i, l in enumerate(lines) if l.startswith("vt "))
  u, v = map(float, lines[k].split()[1:])
  lines[k] = f"vt {u + 0.01:.6f} {v:.6f}"  # one texture coordinate moved
  obj.write_text("\n".join(lines) + "\n")
  _one_line_error(cli("evaluate.py", "--ckpt", str(trained_run), "--data", str(other)),
                  "trained on topology", "different faces or UVs")


GENERATE = textwrap.dedent("""
    import sys
    from configs import tiny
    from mmtalker_jax.training import trainer
    config = tiny.get_config()
    config.data.root = sys.argv[1]
    trainer.ensure_corpus(config.data)
    print(sorted(m for m in ("numba", "scipy") if m in sys.modules))
""")


def test_a_missing_corpus_is_generated_outside_the_trainers_process(tmp_path, tiny_corpus_root):
  """The trainer makes SynthTalk when data.root is missing, in a process of its
  own: the generator's numba and scipy never load into the trainer."""
  from mmtalker_jax.data.synthetic.corpus import tree_digest

  root = tmp_path / "made"
  proc = subprocess.run([sys.executable, "-c", GENERATE, str(root)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines() == [f"generating SynthTalk at {root} ...", "[]"]
  for part in ("wav", "vertices_npy"):
    assert tree_digest(root / part) == tree_digest(os.path.join(tiny_corpus_root, part))
  for name in ("manifest.json", "template.obj", "regions.json"):
    assert (root / name).read_bytes() == open(os.path.join(tiny_corpus_root, name), "rb").read()


def test_unknown_config_field_is_one_line(tmp_path, tiny_corpus_root):
  proc = cli("train.py", *train_args(tmp_path / "w", tiny_corpus_root), "--config.train.nonsense=3")
  _one_line_error(proc, "nonsense")
  assert not (tmp_path / "w").exists()
  proc = cli("train.py", *train_args(tmp_path / "w", tiny_corpus_root), "--config.train.num_stepz=5")
  assert proc.returncode == 2 and proc.stderr.strip() == (
      "error: --config.train.num_stepz: the config has no field 'num_stepz' "
      "(did you mean 'num_steps'?)"), proc.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained_run, tmp_path, tiny_corpus_root):
  import shutil
  workdir = tmp_path / "nan"
  shutil.copytree(trained_run, workdir)  # 20 good steps, checkpoints every 10
  before = sorted(os.listdir(workdir / "checkpoints"))
  proc = cli("train.py", *train_args(workdir, tiny_corpus_root, 60, 10),
             "--config.train.learning_rate=1e30")
  _one_line_error(proc, "loss is", "stopped without saving", "step 20")
  assert proc.returncode == 3
  assert sorted(os.listdir(workdir / "checkpoints")) == before


def _index_work_on_constants(jaxpr, dynamic: list[bool], found: list[str]) -> list[bool]:
  """Walks a jaxpr (and the jaxprs inside it), collecting gathers and scatters whose
  inputs are all constants: index work XLA would fold at every compile. Returns which
  outputs depend on the inputs marked `dynamic`."""
  from jax.extend import core as jex_core

  is_dyn = {v: d for v, d in zip(jaxpr.invars, dynamic)}
  dyn = lambda v: not isinstance(v, jex_core.Literal) and is_dyn.get(v, False)  # noqa: E731
  for eqn in jaxpr.eqns:
    ins = [dyn(v) for v in eqn.invars]
    outs = [any(ins)] * len(eqn.outvars)
    inner = [p for p in eqn.params.values() if hasattr(p, "eqns") or hasattr(p, "jaxpr")]
    for sub in inner:
      sub = getattr(sub, "jaxpr", sub)
      if len(sub.invars) == len(ins):
        sub_outs = _index_work_on_constants(sub, ins, found)
        if len(sub_outs) == len(outs):
          outs = sub_outs
      else:
        _index_work_on_constants(sub, [any(ins)] * len(sub.invars), found)
    name = eqn.primitive.name
    if ("gather" in name or "scatter" in name) and not any(ins):
      size = max(int(np.prod(v.aval.shape)) for v in eqn.outvars)
      found.append(f"{name} -> {size}")
    for v, d in zip(eqn.outvars, outs):
      is_dyn[v] = d
  return [dyn(v) for v in jaxpr.outvars]


def test_the_train_step_leaves_no_mesh_sized_index_work_for_xla_to_fold(tiny_config, data_cfg):
  """Degrees, normalisations and the vertices' own points come from numpy (MeshAssets):
  no gather or scatter in the step (all-vertex loss included) runs on constants alone."""
  batch, model, params = tiny_model_and_batch(tiny_config, data_cfg)
  optimizer = optax.adam(1e-3)
  state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  step = lambda s, b: train_step(s, b, jax.random.key(0), sampler_settings(tiny_config.sampler),  # noqa: E731
                                 model=model, optimizer=optimizer, loss_cfg=tiny_config.loss,
                                 num_points=32, with_vertex_loss=True)
  closed = jax.make_jaxpr(step)(state, batch)
  found = []
  _index_work_on_constants(closed.jaxpr, [True] * len(closed.jaxpr.invars), found)
  v = model.assets.num_vertices
  assert not [f for f in found if int(f.split("-> ")[1]) >= v], found
