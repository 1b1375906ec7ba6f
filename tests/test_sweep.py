"""Sweeps: members x seeds trained as one vmapped program, each replica an ordinary run."""

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
from mmtalker_jax.data.pipeline import zipped
from mmtalker_jax.training import checkpoint, population, sharding, trainer
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
  runs = population.replicas_of(config, "/w")
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
  assert population.replicas_of(config, "/w")[0].config.sampler.seed == by_name["learned_k64"].config.sampler.seed
  config.sweep.members = {"bad": dict(temprature=2.0)}
  with pytest.raises(ValueError, match="'bad'.*temprature"):
    population.replicas_of(config, "/w")
  config.sweep.members = {"worse": dict(mode="uniform")}
  with pytest.raises(ValueError, match="'worse'.*mode"):
    population.replicas_of(config, "/w")
  # K = 0 (every vertex) draws nothing: no point mask; it cannot share a program
  # with sampled members.
  config.sweep.members = {"all": dict(num_points=0), "all_too": dict(num_points=0)}
  _, mask, k = population.stacked_settings(population.replicas_of(config, "/w"))
  assert mask is None and k == 0
  config.sweep.members = {"all": dict(num_points=0), "some": dict(num_points=64)}
  with pytest.raises(ValueError, match="num_points=0.*cannot share a program"):
    population.stacked_settings(population.replicas_of(config, "/w"))


def test_seeds_replicate_every_member_in_seed_major_programs():
  config = sweep_density.get_config()
  config.sweep.seeds = (0, 1, 2)
  runs = population.replicas_of(config, "/w")
  names = sorted(config.sweep.members.keys())
  assert [(r.member, r.seed) for r in runs] == [(n, s) for s in (0, 1, 2) for n in names]
  assert runs[0].workdir == f"/w/members/{names[0]}/seed_0"
  assert runs[0].name == f"{names[0]}/seed_0"
  assert [r.config.seed for r in runs] == [s for s in (0, 1, 2) for _ in names]
  # A member's sample stream is its own in every seed; the seed changes it.
  k64 = [r for r in runs if r.member == "learned_k64"]
  assert len({r.config.sampler.seed for r in k64}) == 1
  keys = {str(jax.random.key_data(population.sample_key(r.config))) for r in k64}
  assert len(keys) == 3
  # Programs: one seed's members by default, any size on request.
  assert [[(r.member, r.seed) for r in g] for g in population.groups(config, runs)] == [
      [(n, s) for n in names] for s in (0, 1, 2)]
  config.sweep.group_size = 12
  assert [len(g) for g in population.groups(config, runs)] == [12]
  config.sweep.group_size = 5
  assert [len(g) for g in population.groups(config, runs)] == [5, 5, 2]
  for bad in ((0, 0), (-1,)):
    config.sweep.seeds = bad
    with pytest.raises(ValueError, match="distinct seeds"):
      population.replicas_of(config, "/w")
  # A plain config is a population of one: the run itself.
  plain = sweep_density.get_config()
  del plain["sweep"]
  one, = population.replicas_of(plain, "/w")
  assert (one.name, one.workdir, one.config is plain) == ("model", "/w", True)


def single_run(model, optimizer, run, corpus, mesh, buckets, steps):
  """`run` trained alone for `steps` steps, as train.py would: its own seed,
  batches, sample stream; the parameters and the first batch's vertices."""
  config = run.config
  state = create_state(model, optimizer, config.data,
                       jax.random.fold_in(jax.random.key(config.seed), 0), mesh)
  first = jax.tree_util.tree_leaves(state.params)
  state = population.stack([state], mesh)
  key = population.stack([population.sample_key(config)], mesh)
  step = trainer.make_train_step(model, optimizer, config, mesh, [run])
  data = Batcher(corpus, "train", config.train.global_batch_size, buckets, train=True,
                 seed=config.seed)
  for _, local in zip(range(steps), data.forever()):
    state, metrics = step(state, sharding.global_batch(local, mesh), key)
  return first, [x[0] for x in jax.tree_util.tree_leaves(state.params)], metrics["loss"][0]


@pytest.mark.slow
def test_vmapped_sweep_trains_each_replica_as_a_single_run(tiny_corpus_root, tmp_path):
  """Two members x two seeds in one program (batches of the two seeds stacked,
  padded to the longer bucket) equal four single runs after three steps; the
  members of a seed start from the same parameters and see the same batches."""
  config = small_sweep(tiny_corpus_root)
  config.sweep.seeds = (0, 3)  # 3: its first epoch takes the buckets in another order
  config.data.cache_dir = str(tmp_path / "cache")
  buckets, steps = (59, 64), 2  # the tiny corpus: 2 sequences of 59 frames, 6 of 60
  corpus = Corpus(config.data)
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  optimizer = make_optimizer(config.train)
  mesh = sharding.make_mesh()
  runs = population.replicas_of(config, str(tmp_path))
  assert [(r.member, r.seed) for r in runs] == [
      ("k16_hot", 0), ("k32_area", 0), ("k16_hot", 3), ("k32_area", 3)]

  inits = {s: create_state(model, optimizer, config.data,
                           jax.random.fold_in(jax.random.key(s), 0), mesh) for s in (0, 3)}
  state = population.stack([inits[r.seed] for r in runs], mesh)
  keys = population.stack([population.sample_key(r.config) for r in runs], mesh)
  step = trainer.make_train_step(model, optimizer, config, mesh, runs)
  batchers = [Batcher(corpus, "train", config.train.global_batch_size, buckets, train=True,
                      seed=s) for s in (0, 3)]
  alone = [[b["frame_mask"].shape[1] for _, b in zip(range(steps), x.forever())] for x in batchers]
  assert alone[0] != alone[1], "the test should see the two seeds in different buckets"
  for _, local in zip(range(steps), zipped(batchers)):
    assert local["vertices"].shape[0] == 2
    state, metrics = step(state, sharding.global_batch(local, mesh, stacked=True), keys)
  assert metrics["loss"].shape == (4,)

  for i, run in enumerate(runs):
    first, params, loss = single_run(model, optimizer, run, corpus, mesh, buckets, steps)
    np.testing.assert_allclose(metrics["loss"][i], loss, rtol=1e-5)
    for a, b in zip(params, jax.tree_util.tree_leaves(state.params)):
      np.testing.assert_allclose(b[i], a, rtol=1e-4, atol=1e-5)
    # Common random numbers: a seed's members start where the seed's run starts.
    for a, b in zip(first, jax.tree_util.tree_leaves(inits[run.seed].params)):
      np.testing.assert_array_equal(a, b)
  logits = np.asarray(state.params["face_logits"])
  assert np.abs(logits[0] - logits[1]).max() > 1e-4  # members of a seed learn differently
  assert np.abs(logits[0] - logits[2]).max() > 1e-4  # and so do the seeds of a member


def sweep_args(workdir, root, steps=4, every=2):
  return ["train.py", "--config", "configs/sweep_density.py:tiny", "--workdir", str(workdir),
          "--config.sweep.seeds=0,1",
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          f"--config.train.eval_every={every}", f"--config.train.log_every={every}",
          *(f"--config.model.{k}={v}" for k, v in SHALLOW.items())]


def member_params(workdir, step):
  out = {}
  for name, seeds in population.replica_dirs(str(workdir)).items():
    for seed, folder in seeds.items():
      mngr = checkpoint.manager(folder, 1, read_only=True)
      state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
      out[name, seed] = jax.tree_util.tree_leaves(state["state"]["params"])
  return out


@pytest.mark.slow
def test_sweep_cli_trains_evaluates_resumes_and_plots(tiny_corpus_root, tmp_path):
  """Four members x two seeds (two programs) through train.py, evaluate.py and
  viz.sweep; a SIGKILLed sweep restarted; NaN in one replica on a copy of it."""
  a, c = tmp_path / "a", tmp_path / "c"
  steps, every, seeds = 4, 2, (0, 1)
  proc = cli(*sweep_args(a, tiny_corpus_root, steps, every))
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(sweep_density.get_config("tiny").sweep.members.keys())
  assert sorted(os.listdir(a / "members")) == names
  for name in names:
    assert sorted(os.listdir(a / "members" / name)) == ["seed_0", "seed_1"]
    for seed in seeds:
      run = a / "members" / name / f"seed_{seed}"
      assert sorted(int(s) for s in os.listdir(run / "checkpoints") if s.isdigit()) == [2, 4]
      cfg = json.loads((run / "config.json").read_text())
      assert "sweep" not in cfg and cfg["seed"] == seed
      assert cfg["sampler"]["num_points"] == (16 if name == "learned_k16" else 64)
      logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
      assert [r["step"] for r in logged if "val_lve" in r] == [2, 4]
  reference = member_params(a, steps)
  # Paired: a seed's members start equal and see the same batches, but train
  # differently; a member's seeds differ.
  assert any(np.abs(x - y).max() > 0 for x, y in
             zip(reference["learned_k64", 0], reference["area_k64", 0]))
  assert any(np.abs(x - y).max() > 0 for x, y in
             zip(reference["learned_k64", 0], reference["learned_k64", 1]))

  # SIGKILLed as soon as the first replica's first checkpoint appears (the
  # others' saves of that step may or may not have finished; the second
  # program has not started), then the same command again: it resumes from
  # the newest step every replica of a program holds and ends as if never stopped.
  proc = subprocess.Popen([sys.executable, *sweep_args(c, tiny_corpus_root, steps, every)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = c / "members" / names[0] / "seed_0" / "checkpoints" / str(every)
  deadline = time.time() + 300
  while not first.is_dir() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = [checkpoint.complete_steps(str(c / "members" / n / "seed_0")) for n in names]
  assert not all(steps in d for d in done), "the sweep finished before it could be killed"
  proc = cli(*sweep_args(c, tiny_corpus_root, steps, every))
  assert proc.returncode == 0, proc.stderr[-3000:]
  resumed = member_params(c, steps)
  for name, seed in reference:
    for x, y in zip(reference[name, seed], resumed[name, seed]):
      np.testing.assert_array_equal(x, y)
    log = os.path.join("members", name, f"seed_{seed}", "metrics.jsonl")
    assert (a / log).read_text() == (c / log).read_text()

  # evaluate.py: a row per replica, each member's mean and interval over
  # seeds, differences from the reference, and the JSON the issue describes.
  out = tmp_path / "sweep.json"
  proc = cli("evaluate.py", "--ckpt", str(a), "--split", "val", "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = proc.stdout.splitlines()
  for name in names:
    assert any(line.startswith(name.replace("_", " ") + "/seed 1") for line in table)
    assert any(line.startswith(name + " ") and "+-" in line for line in table), proc.stdout
  assert any(line.startswith("difference from learned_k64") for line in table)
  result = json.loads(out.read_text())
  assert sorted(result["members"]) == names and result["reference"] == "learned_k64"
  assert sorted(result["differences"]) == [n for n in names if n != "learned_k64"]
  assert set(result) >= {"members", "reference", "differences", "static_template",
                         "mean_motion", "split", "sequences", "method"}
  k64, k16 = result["members"]["learned_k64"], result["members"]["learned_k16"]
  assert k64["settings"]["num_points"] == 64 and set(k64["steps"]) == {"0", "1"}
  lve = [k64["seeds"][str(s)]["lve"] for s in seeds]
  assert k64["mean"]["lve"] == pytest.approx(np.mean(lve), rel=1e-9)
  lo, hi = k64["ci95"]["lve"]
  half = 12.7062 * np.std(lve, ddof=1) / np.sqrt(2)  # t(0.975, 1)
  assert (lo, hi) == pytest.approx((np.mean(lve) - half, np.mean(lve) + half), rel=1e-4)
  diff = result["differences"]["learned_k16"]["lve"]
  assert diff["mean"] == pytest.approx(k16["mean"]["lve"] - k64["mean"]["lve"], rel=1e-6)
  # Each replica is an ordinary run: evaluating it alone gives its numbers.
  single = tmp_path / "single.json"
  proc = cli("evaluate.py", "--ckpt", str(a / "members" / "learned_k64" / "seed_1"),
             "--split", "val", "--out", str(single))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(single.read_text())["model"]["lve"] == pytest.approx(lve[1], rel=1e-6)
  proc = cli("evaluate.py", "--ckpt", str(a), "--long", "5")
  assert proc.returncode == 2 and "members/NAME" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  wav = os.path.join(tiny_corpus_root, "wav", sorted(os.listdir(os.path.join(tiny_corpus_root, "wav")))[0])
  proc = cli("predict.py", "--ckpt", str(a), "--audio", wav, "--out", str(tmp_path / "p.npy"))
  assert proc.returncode == 2 and "members/NAME" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1

  # A NaN in one replica stops the sweep naming it; no replica loses a checkpoint.
  nan = tmp_path / "nan"
  shutil.copytree(a, nan)
  proc = cli(*sweep_args(nan, tiny_corpus_root, 8, every),
             "--config.sweep.members.learned_k16.temperature=1e-38")
  assert proc.returncode == 3, proc.stderr[-3000:]
  assert "'learned_k16/seed_0'" in proc.stderr and "loss is nan at step 6" in proc.stderr
  for name in names:
    for seed in seeds:
      assert sorted(os.listdir(nan / "members" / name / f"seed_{seed}" / "checkpoints")) == [
          "2", "4"]

  png = tmp_path / "sweep.png"
  proc = cli("-m", "mmtalker_jax.viz.sweep", str(a), "--results", str(out), "--out", str(png))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plot_reads_each_seeds_best_validation_entry(tmp_path):
  """Without --results, each replica contributes its best validation entry, kept per seed."""
  from mmtalker_jax.viz import sweep as viz_sweep

  lve = {0: [0.5, 0.2, 0.3], 1: [0.6, 0.4, 0.1], 2: [0.9, 0.7, 0.8]}
  for seed, values in lve.items():
    run = tmp_path / "members" / "learned_k4" / f"seed_{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"sampler": {"mode": "learned", "num_points": 4}}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 10 * i, "val_lve": v, "val_eve": 10 * v, "val_fdd_abs": v + seed})
        + "\n" for i, v in enumerate(values)))
  points, _ = viz_sweep.member_points(str(tmp_path))
  row = points["learned_k4"]
  assert viz_sweep.seed_values(row, "lve") == [0.2, 0.1, 0.7]
  assert viz_sweep.seed_values(row, "fdd_abs") == [0.2, 1.1, 2.7]
  np.testing.assert_allclose(row["mean"]["lve"], 1.0 / 3)
  lo, hi = row["ci95"]["lve"]
  # t(0.975, 2) = 4.303 times the sample sd (0.3215) over sqrt(3).
  np.testing.assert_allclose([lo, hi], [1 / 3 - 0.7987, 1 / 3 + 0.7987], atol=1e-3)
  assert viz_sweep.seed_values({"mean": {}}, "lve") == []
  # A results file whose rows lack settings, or key seeds by anything but an
  # integer, is named in one error rather than failing inside the plot.
  from mmtalker_jax.errors import InputError
  good = {"mean": {"lve": 0.1}, "settings": {"mode": "learned", "num_points": 4},
          "seeds": {"0": {"lve": 0.1}}}
  for broken in ({k: v for k, v in good.items() if k != "settings"},
                 dict(good, seeds={"x": {"lve": 0.1}})):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"members": {"m": broken}}))
    with pytest.raises(InputError, match="not a sweep's results"):
      viz_sweep.member_points(str(tmp_path), str(results))
  results.write_text(json.dumps({"members": {"m": good}}))
  assert viz_sweep.member_points(str(tmp_path), str(results))[0]["m"]["seeds"] == good["seeds"]


MEMBER_AXIS = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import Mesh
    sys.path.insert(0, {root!r})
    from configs import sweep_density
    from mmtalker_jax.data.corpus import Corpus
    from mmtalker_jax.data.pipeline import Batcher
    from mmtalker_jax.models.mmtalker import build_model
    from mmtalker_jax.training import population, sharding, trainer
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
    runs = population.replicas_of(cfg, "/unused")

    def one_step(mesh):
      init = create_state(model, optimizer, cfg.data, jax.random.key(0), mesh)
      state = population.stack([init] * len(runs), mesh)
      keys = population.stack([population.sample_key(r.config) for r in runs], mesh)
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
