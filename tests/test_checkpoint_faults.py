"""Damaged checkpoints and full disks: one line, and every complete checkpoint stays usable."""

import errno
import glob
import os
import shutil
import subprocess
import sys
import uuid

import jax
import numpy as np
import pytest

from mmtalker_jax.training import checkpoint, disk_space, restore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(script, *args):
  return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def train_args(workdir, root, steps, every=10):
  return ["--config", "configs/tiny.py", "--workdir", str(workdir),
          f"--config.data.root={root}", f"--config.train.num_steps={steps}",
          f"--config.train.eval_every={every}", "--config.train.log_every=10"]


def data_files(step_dir) -> list[str]:
  """The files holding the arrays of a step's train state (Orbax OCDBT data files)."""
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
           if os.path.isfile(f)]
  assert files, os.listdir(os.path.join(step_dir, "state"))
  return files


def truncate(step_dir):
  for f in data_files(step_dir):
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def one_line(proc) -> str:
  lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
  assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return lines[0]


def test_evaluate_names_an_unreadable_step_and_the_readable_ones(trained_run, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained_run, run)  # checkpoints at 10 and 20
  truncate(run / "checkpoints" / "20")
  line = one_line(cli("evaluate.py", "--ckpt", str(run / "checkpoints" / "20"), "--split", "val"))
  assert "step 20 cannot be read" in line and "readable steps: [10]" in line, line
  # Missing data files: the same message; the readable step still evaluates.
  for f in data_files(run / "checkpoints" / "20"):
    os.remove(f)
  line = one_line(cli("evaluate.py", "--ckpt", str(run / "checkpoints" / "20"), "--split", "val"))
  assert "step 20 cannot be read" in line and "readable steps: [10]" in line, line
  proc = cli("evaluate.py", "--ckpt", str(run / "checkpoints" / "10"), "--split", "val")
  assert proc.returncode == 0 and "checkpoint step 10" in proc.stdout, proc.stderr[-3000:]


def test_train_resumes_from_the_newest_readable_step_and_keeps_the_bad_one(trained_run, tmp_path,
                                                                            tiny_corpus_root):
  run = tmp_path / "run"
  shutil.copytree(trained_run, run)
  truncate(run / "checkpoints" / "20")
  proc = cli("train.py", *train_args(run, tiny_corpus_root, 20))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "skipping checkpoint step 20" in proc.stdout and "resuming at step 10" in proc.stdout
  # Set aside, not deleted; step 20 trained again ends as the undamaged run did.
  assert (run / "checkpoints" / "20.unreadable").is_dir()
  assert checkpoint.complete_steps(str(run)) == [10, 20]
  assert (run / "metrics.jsonl").read_text() == (trained_run / "metrics.jsonl").read_text()


def test_no_space_is_recognised_through_wrappers():
  assert disk_space.is_no_space(OSError(errno.ENOSPC, "No space left on device"))
  try:
    try:
      raise OSError(errno.ENOSPC, "disk")
    except OSError as inner:
      raise ValueError("async save failed") from inner
  except ValueError as outer:
    assert disk_space.is_no_space(outer)
  assert disk_space.is_no_space(RuntimeError("INTERNAL: write failed: No space left on device"))
  assert not disk_space.is_no_space(OSError(errno.EACCES, "Permission denied"))


@pytest.fixture()
def small_disk(tmp_path):
  """A tmpfs folder of a given size (needs root and mount; skipped where neither is allowed)."""
  mounted = []

  def make(size_bytes):
    folder = tmp_path / f"disk_{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                           str(folder)], capture_output=True, text=True)
    if proc.returncode:
      pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    mounted.append(folder)
    return folder

  yield make
  for folder in mounted:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_full_disk_during_a_save_is_one_line_and_keeps_earlier_checkpoints(
    trained_run, tiny_corpus_root, small_disk):
  used = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(trained_run) for f in fs)
  step_size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                  os.walk(trained_run / "checkpoints" / "20") for f in fs)
  # Room for the run as it is and a little more, not for another checkpoint.
  disk = small_disk(used + 64 * 1024 + step_size // 4)
  run = disk / "run"
  shutil.copytree(trained_run, run)
  before = checkpoint.complete_steps(str(run))
  line = one_line(cli("train.py", *train_args(run, tiny_corpus_root, 40)))
  assert "no space left on device" in line and str(run) in line, line
  assert f"last complete checkpoint: step {max(before)}" in line, line
  assert set(before) <= set(checkpoint.complete_steps(str(run)))
  # Every checkpoint that was complete still restores (evaluate.py's path) to finite weights.
  for step in before:
    params = restore.restore(str(run / "checkpoints" / str(step))).params
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))
