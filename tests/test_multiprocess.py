"""Two processes on loopback train, fail, resume and evaluate as one process does.

One story, to keep the number of processes started small: a reference run in
one process with 4 devices; the same run as 2 processes x 2 devices, one of
which is SIGKILLed after the first checkpoint, so the survivor must stop with
JAX's message (another task died) within 60 s; that run resumed as 1 process
(elastic 2 -> 1) and the reference resumed from its step 10 as 2 processes
(1 -> 2) must both end equal to the reference; and evaluate.py as 2
processes must give the numbers the reference logged.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mmtalker_jax.training import checkpoint, restore
from tests.devices import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, EVERY = 10, 5


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def train_args(workdir, root, steps):
  # A shallower tiny model: these tests are about processes, and most of their
  # time is XLA compiling the program in every process.
  return ["train.py", "--config", "configs/tiny.py", "--workdir", str(workdir),
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          f"--config.train.eval_every={EVERY}", "--config.train.log_every=5",
          "--config.model.audio_levels=1", "--config.model.gcn_blocks=1"]


def start(args, processes: int, port: int):
  """`processes` copies of `args` joined into one job (2 simulated devices each)."""
  if processes == 1:
    return [subprocess.Popen([sys.executable, *args], cwd=ROOT, env=with_devices(4), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
  return [subprocess.Popen([sys.executable, *args, f"--coordinator_address=127.0.0.1:{port}",
                            f"--num_processes={processes}", f"--process_id={i}"],
                           cwd=ROOT, env=with_devices(2), text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE) for i in range(processes)]


def finish(procs, timeout=300) -> list[tuple[int, str, str]]:
  """Waits for every process (killing all of them on a timeout); (code, out, err) each."""
  out = []
  try:
    for p in procs:
      o, e = p.communicate(timeout=timeout)
      out.append((p.returncode, o, e))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return out


def run(args, processes: int):
  results = finish(start(args, processes, free_port()))
  for code, _, err in results:
    assert code == 0, err[-3000:]
  return results


def logged(workdir) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def params(workdir, step):
  """The saved parameters, restored onto this process's devices (as evaluate.py does).

  Without attention key biases: adding the same q.b to every logit of a query
  changes no softmax, so their gradient is zero up to rounding, and Adam turns
  that rounding into full-size steps. They are noise in any two runs.
  """
  flat = jax.tree_util.tree_flatten_with_path(
      restore.restore(str(workdir / "checkpoints" / str(step))).params)[0]
  out = []
  for path, x in flat:
    name = jax.tree_util.keystr(path)
    if name.endswith("['qkv']['bias']"):  # [3,H,dh]: query, key, value
      x = np.delete(np.asarray(x), 1, axis=0)
    if not name.endswith("['key']['bias']"):
      out.append(x)
  return out


def assert_same_logs(a, b):
  """Every logged value agrees to 1e-4 relative. Sums over the batch are split
  differently over 1 or 2 processes, so float rounding differs and grows with
  the steps: measured up to about 1.3e-5 after 30 steps, 6e-6 after 20."""
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_allclose(y[k], x[k], rtol=1e-4, atol=1e-12, err_msg=f"step {x['step']} {k}")


@pytest.mark.slow
def test_two_processes_train_fail_resume_and_evaluate_as_one(tmp_path, tiny_corpus_root,
                                                            one_job_at_a_time):
  ref, multi = tmp_path / "ref", tmp_path / "multi"
  run(train_args(ref, tiny_corpus_root, STEPS), 1)

  # Two processes; process 1 dies after the first checkpoint.
  # (--heartbeat_seconds 10 instead of the default 30 to keep the test short.)
  procs = start([*train_args(multi, tiny_corpus_root, STEPS), "--heartbeat_seconds=10"], 2,
                free_port())
  try:
    deadline = time.time() + 240
    while not (multi / "checkpoints" / str(EVERY)).is_dir() and time.time() < deadline:
      assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    (code, _, err), = finish(procs[:1], timeout=90)
    waited = time.time() - killed
  finally:
    finish(procs)
  assert code != 0 and waited <= 60, (code, waited, err[-2000:])
  assert "another task died" in err and "stopped sending heartbeats" in err, err[-3000:]
  assert "Extension modules" not in err  # no fault-handler dump after the message
  saved = checkpoint.complete_steps(str(multi))
  assert saved and max(saved) < STEPS

  # Restarted as one process (4 devices): the first steps were two processes'.
  run(train_args(multi, tiny_corpus_root, STEPS), 1)
  assert_same_logs(logged(ref), logged(multi))
  for x, y in zip(params(ref, STEPS), params(multi, STEPS)):
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)
  # The reverse: the reference's step 10 resumed as two processes.
  back = tmp_path / "back"
  shutil.copytree(ref, back)
  shutil.rmtree(back / "checkpoints" / str(STEPS))
  run(train_args(back, tiny_corpus_root, STEPS), 2)
  assert_same_logs(logged(ref), logged(back))
  for x, y in zip(params(ref, STEPS), params(back, STEPS)):
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)

  # evaluate.py as two processes gives the numbers one process logged while training.
  out = tmp_path / "two.json"
  results = run(["evaluate.py", "--ckpt", str(ref), "--split", "val", "--out", str(out)], 2)
  assert results[0][1].count("static template") == 1
  assert "static template" not in results[1][1]  # process 0 prints
  table = json.loads(out.read_text())
  logged_val = next(r for r in logged(ref) if r["step"] == table["step"] and "val_lve" in r)
  for k in ("lve", "eve", "fdd", "mve"):
    np.testing.assert_allclose(table["model"][k], logged_val[f"val_{k}"], rtol=1e-5)
  assert table["static_template"]["lve"] > table["model"]["lve"]


def test_bad_job_flags_get_one_line(tmp_path, tiny_corpus_root, one_job_at_a_time):
  args = train_args(tmp_path / "w", tiny_corpus_root, 2)
  port = free_port()
  (code, _, err), = finish([subprocess.Popen(
      [sys.executable, *args, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       "--process_id=2"], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)])
  assert code == 2 and err.strip() == "error: --process_id=2 must be in [0, --num_processes=2)"
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    (code, _, err), = finish([subprocess.Popen(
        [sys.executable, *args, f"--coordinator_address=127.0.0.1:{taken}", "--num_processes=2",
         "--process_id=0"], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)])
  assert code == 2 and len(err.strip().splitlines()) == 1 and "already in use" in err, err
  # A process started with another --num_processes than process 0's: both stop, one line each.
  port = free_port()
  procs = [subprocess.Popen([sys.executable, *args, f"--coordinator_address=127.0.0.1:{port}",
                             f"--num_processes={n}", f"--process_id={i}"], cwd=ROOT, text=True,
                            env=with_devices(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i, n in enumerate((2, 3))]
  for code, _, err in finish(procs, timeout=120):
    lines = [x for x in err.strip().splitlines() if "Gloo" not in x]
    assert code == 2 and lines == [
        f"error: the job at 127.0.0.1:{port} has 2 processes (process 0's --num_processes), "
        "but its processes were started with --num_processes=2 (process 0), 3 (process 1); "
        "start every process with --num_processes=2"], err[-2000:]
  # Process 0 of a job whose other process never starts: one line when the wait ends.
  port = free_port()
  (code, _, err), = finish([subprocess.Popen(
      [sys.executable, *args, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
       "--process_id=0", "--init_timeout_seconds=5"], cwd=ROOT, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)], timeout=60)
  assert code == 2 and err.strip() == (
      f"error: the job at 127.0.0.1:{port} did not form within 5 s: process 0 waited for all 2 "
      "processes to join; check that every process was started, with the same "
      "--num_processes and --coordinator_address (--init_timeout_seconds waits longer)"), err
  assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_sweep_members_spread_over_two_processes_train_and_save(tmp_path, tiny_corpus_root,
                                                               one_job_at_a_time):
  """A 4-member sweep on a (member 2, data 2) mesh whose devices live in two
  processes: every member saves each checkpoint once (Orbax's multi-host
  protocol, one manager per member; concurrent saves used to collide), and the
  members train apart. That the member axis changes no number is
  test_sweep.py's 8-device test; that two processes change none, the story above."""
  args = ["train.py", "--config", "configs/sweep_density.py:tiny",
          f"--config.data.root={tiny_corpus_root}", "--config.train.num_steps=4",
          "--config.train.eval_every=2", "--config.train.log_every=1",
          "--config.model.audio_levels=1", "--config.model.gcn_blocks=1",
          "--config.sweep.member_devices=2", "--workdir", str(tmp_path / "two")]
  run(args, 2)
  members = tmp_path / "two" / "members"
  names = sorted(os.listdir(members))
  assert len(names) == 4
  losses = []
  for name in names:
    assert checkpoint.complete_steps(str(members / name)) == [2, 4]
    rows = logged(members / name)
    assert [r["step"] for r in rows if "val_lve" in r] == [2, 4]
    losses.append([r["loss"] for r in rows if "loss" in r])
    assert np.isfinite(losses[-1]).all() and len(losses[-1]) == 4
  assert len({tuple(x) for x in losses}) == 4  # same batches, different samplers
