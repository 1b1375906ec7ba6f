"""Sweeps: members trained as one vmapped program, each an ordinary run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import sweep_density
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.models.mmtalker import build_model
from mmtalker_jax.training import checkpoint, members, sharding, trainer
from mmtalker_jax.training.optimizer import make_optimizer
from mmtalker_jax.training.state import create_state
from tests.devices import run_on_eight_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A shallower tiny model: these tests are about the program, not the network,
# and most of their time is XLA compiling it.
SHALLOW = dict(audio_levels=1, gcn_blocks=1)


def cli(*args, timeout=600):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def small_sweep(data_root=None):
  """Two members of the tiny model: a masked K with every traced setting moved, and area mode."""
  config = sweep_density.get_config("tiny")
  config.model.update(SHALLOW)
  config.sweep.members = {
      "k16_hot": dict(num_points=16, temperature=2.0, epsilon=0.2, alpha=0.0),
      "k32_area": dict(num_points=32, mode="area")}
  if data_root:
    config.data.root = data_root
  return config


def test_members_apply_overrides_and_name_bad_ones():
  config = sweep_density.get_config()
  runs = members.members_of(config, "/w")
  assert [r.name for r in runs] == sorted(config.sweep.members.keys())
  by_name = {r.name: r for r in runs}
  assert by_name["learned_k64"].num_points == 64
  assert by_name["area_k256"].settings.learned is False
  assert by_name["learned_k256_alpha0"].settings.alpha == 0.0
  assert by_name["learned_k64"].workdir == "/w/members/learned_k64"
  assert all("sweep" not in r.config for r in runs)
  # Each member has its own sample stream, which does not depend on the others.
  seeds = [r.config.sampler.seed for r in runs]
  assert len(set(seeds)) == len(seeds) and 0 not in seeds
  config.sweep.members = {"learned_k64": dict(num_points=64)}
  assert members.members_of(config, "/w")[0].config.sampler.seed == by_name["learned_k64"].config.sampler.seed
  config.sweep.members = {"bad": dict(temprature=2.0)}
  with pytest.raises(ValueError, match="'bad'.*temprature"):
    members.members_of(config, "/w")
  config.sweep.members = {"worse": dict(mode="uniform")}
  with pytest.raises(ValueError, match="'worse'.*mode"):
    members.members_of(config, "/w")


@pytest.mark.slow
def test_vmapped_sweep_trains_each_member_as_a_single_run(tiny_corpus_root, tmp_path):
  """Three steps of the stacked, vmapped, point-masked program equal three single runs."""
  config = small_sweep(tiny_corpus_root)
  config.data.cache_dir = str(tmp_path / "cache")
  corpus = Corpus(config.data)
  batches = list(zip(range(3), Batcher(corpus, "train", config.train.global_batch_size,
                                       (64,), train=True, seed=0).forever()))
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(config.train)
  mesh = sharding.make_mesh()
  init = create_state(model, optimizer, config.data, jax.random.key(0), mesh)
  runs = members.members_of(config, str(tmp_path))

  state = members.stack([init] * len(runs), mesh)
  keys = members.stack([members.sample_key(r.config) for r in runs], mesh)
  step = trainer.make_train_step(model, optimizer, config, mesh, runs)
  for _, local in batches:
    state, metrics = step(state, sharding.global_batch(local, mesh), keys)
  assert metrics["loss"].shape == (2,)

  for i, run in enumerate(runs):
    single = create_state(model, optimizer, config.data, jax.random.key(0), mesh)
    single_step = trainer.make_train_step(model, optimizer, run.config, mesh, [run])
    for _, local in batches:
      single, single_metrics = single_step(single, sharding.global_batch(local, mesh),
                                           members.sample_key(run.config))
    np.testing.assert_allclose(metrics["loss"][i], single_metrics["loss"], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(single.params),
                    jax.tree_util.tree_leaves(state.params)):
      np.testing.assert_allclose(b[i], a, rtol=1e-4, atol=1e-5)
  # The members did learn different things.
  logits = np.asarray(state.params["face_logits"])
  assert np.abs(logits[0] - logits[1]).max() > 1e-4


def sweep_args(workdir, root, steps=4, every=2):
  return ["train.py", "--config", "configs/sweep_density.py:tiny", "--workdir", str(workdir),
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          f"--config.train.eval_every={every}", f"--config.train.log_every={every}",
          *(f"--config.model.{k}={v}" for k, v in SHALLOW.items())]


def member_params(workdir, step):
  out = {}
  for name, folder in members.sweep_member_dirs(str(workdir)).items():
    mngr = checkpoint.manager(folder, 1, read_only=True)
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    out[name] = jax.tree_util.tree_leaves(state["state"]["params"])
  return out


@pytest.mark.slow
def test_sweep_cli_trains_evaluates_resumes_and_plots(tiny_corpus_root, tmp_path):
  """One sweep through train.py, evaluate.py and viz.sweep; a SIGKILLed sweep
  restarted; NaN in one member on a copy of it."""
  a, c = tmp_path / "a", tmp_path / "c"
  steps, every = 4, 2
  proc = cli(*sweep_args(a, tiny_corpus_root, steps, every))
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(sweep_density.get_config("tiny").sweep.members.keys())
  assert sorted(os.listdir(a / "members")) == names
  for name in names:
    run = a / "members" / name
    assert sorted(int(s) for s in os.listdir(run / "checkpoints") if s.isdigit()) == [2, 4]
    cfg = json.loads((run / "config.json").read_text())
    assert "sweep" not in cfg
    assert cfg["sampler"]["num_points"] == (16 if name == "learned_k16" else 64)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "val_lve" in r] == [2, 4]
  reference = member_params(a, steps)
  # Paired: members start equal and see the same batches, but train differently.
  assert any(np.abs(x - y).max() > 0 for x, y in
             zip(reference["learned_k64"], reference["area_k64"]))

  # SIGKILLed as soon as the first member's first checkpoint appears (the
  # others' saves of that step may or may not have finished), then the same
  # command again: it resumes from the newest step every member holds (a
  # member ahead keeps its extra step) and ends as if never stopped.
  proc = subprocess.Popen([sys.executable, *sweep_args(c, tiny_corpus_root, steps, every)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = c / "members" / names[0] / "checkpoints" / str(every)
  deadline = time.time() + 300
  while not first.is_dir() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = [checkpoint.complete_steps(str(c / "members" / n)) for n in names]
  assert not all(steps in d for d in done), "the sweep finished before it could be killed"
  proc = cli(*sweep_args(c, tiny_corpus_root, steps, every))
  assert proc.returncode == 0, proc.stderr[-3000:]
  resumed = member_params(c, steps)
  for name in names:
    for x, y in zip(reference[name], resumed[name]):
      np.testing.assert_array_equal(x, y)
    assert ((a / "members" / name / "metrics.jsonl").read_text()
            == (c / "members" / name / "metrics.jsonl").read_text())

  # evaluate.py: a row per member beside the baselines, and the JSON the issue describes.
  out = tmp_path / "sweep.json"
  proc = cli("evaluate.py", "--ckpt", str(a), "--split", "val", "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = proc.stdout.splitlines()
  for name in names:
    assert any(line.startswith(name.replace("_", " ")) for line in table), proc.stdout
  result = json.loads(out.read_text())
  assert sorted(result["members"]) == names
  assert set(result) >= {"members", "static_template", "mean_motion", "scale", "split",
                         "sequences"}
  k64 = result["members"]["learned_k64"]
  assert k64["settings"]["num_points"] == 64 and k64["step"] in (2, 4)
  # Each member is an ordinary run: evaluating it alone gives its row.
  single = tmp_path / "single.json"
  proc = cli("evaluate.py", "--ckpt", str(a / "members" / "learned_k64"), "--split", "val",
             "--out", str(single))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(single.read_text())["model"]["lve"] == pytest.approx(k64["lve"], rel=1e-6)
  proc = cli("evaluate.py", "--ckpt", str(a), "--long", "5")
  assert proc.returncode == 2 and "members/NAME" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1

  # A NaN in one member stops the sweep naming it; no member loses a checkpoint.
  nan = tmp_path / "nan"
  shutil.copytree(a, nan)
  proc = cli(*sweep_args(nan, tiny_corpus_root, 8, every),
             "--config.sweep.members.learned_k16.temperature=1e-38")
  assert proc.returncode == 3, proc.stderr[-3000:]
  assert "'learned_k16'" in proc.stderr and "loss is nan at step 6" in proc.stderr
  for name in names:
    assert sorted(os.listdir(nan / "members" / name / "checkpoints")) == ["2", "4"]

  png = tmp_path / "sweep.png"
  proc = cli("-m", "mmtalker_jax.viz.sweep", str(a), "--results", str(out), "--out", str(png))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


MEMBER_AXIS = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import Mesh
    sys.path.insert(0, {root!r})
    from configs import sweep_density
    from mmtalker_jax.data.corpus import Corpus
    from mmtalker_jax.data.pipeline import Batcher
    from mmtalker_jax.models.mmtalker import build_model
    from mmtalker_jax.training import members, sharding, trainer
    from mmtalker_jax.training.optimizer import make_optimizer
    from mmtalker_jax.training.state import create_state
    assert jax.device_count() == 8
    cfg = sweep_density.get_config("tiny")
    cfg.model.update(audio_levels=1, gcn_blocks=1)
    cfg.data.root = {corpus!r}
    cfg.data.cache_dir = {cache!r}
    corpus = Corpus(cfg.data)
    local = next(Batcher(corpus, "train", 4, (64,), train=True).epoch(0))
    model = build_model(cfg, corpus.assets, len(corpus.train_subjects))
    optimizer = make_optimizer(cfg.train)
    runs = members.members_of(cfg, "/unused")

    def one_step(mesh):
      init = create_state(model, optimizer, cfg.data, jax.random.key(0), mesh)
      state = members.stack([init] * len(runs), mesh)
      keys = members.stack([members.sample_key(r.config) for r in runs], mesh)
      step = trainer.make_train_step(model, optimizer, cfg, mesh, runs)
      batch = sharding.global_batch(local, mesh)
      state, metrics = step(state, batch, keys)
      shards = len(state.params["face_logits"].sharding.device_set)
      return jax.device_get(metrics["loss"]), jax.tree_util.tree_leaves(jax.device_get(state.params)), shards

    mesh8 = sharding.make_mesh(4)
    assert dict(mesh8.shape) == {{"member": 4, "data": 2}}
    l8, p8, shards = one_step(mesh8)
    l1, p1, _ = one_step(Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("member", "data")))
    rel = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12)) for a, b in zip(p8, p1))
    print(json.dumps({{"l8": l8.tolist(), "l1": l1.tolist(), "rel": rel, "shards": shards}}))
""")


@pytest.mark.slow
def test_member_axis_on_eight_devices_matches_one_device(tmp_path, tiny_corpus_root):
  out = run_on_eight_devices(MEMBER_AXIS.format(root=ROOT, corpus=tiny_corpus_root,
                                                cache=str(tmp_path / "cache")),
                             tmp_path / "members.py")
  # Members are spread over the member axis (each device holds its member's
  # state, replicated over the 2 data devices), and the numbers do not change.
  assert out["shards"] == 8
  np.testing.assert_allclose(out["l8"], out["l1"], rtol=1e-5)
  assert out["rel"] < 1e-4
