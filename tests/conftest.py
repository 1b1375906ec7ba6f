"""Shared fixtures: a tiny SynthTalk corpus made once per test session.

The session shares one persistent XLA compilation cache (a fresh folder per
session, also handed to every train.py/evaluate.py/predict.py the tests
start), so each distinct program compiles once per session, not once per
process.

Tests compile XLA's CPU code without LLVM optimisation
(--xla_backend_optimization_level=0, also handed to every process they
start): most of the suite's time is compiling small programs that then run
for milliseconds, and the tests check values, never speed. Every comparison
a test makes is between programs compiled the same way.
"""

import fcntl
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import uuid

XLA_TEST_FLAGS = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_TEST_FLAGS}".strip()

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from mmtalker_jax import compile_cache  # noqa: E402

# Set up exactly as the entry scripts set it up (compile_cache.enable), which
# the processes the tests start pick up from the environment: a cache written
# under other settings (no LRU bookkeeping) makes JAX warn on stderr.
# pytest-xdist's workers (pytest -n 2) share one cache: a program compiles once per run.
def _shared_cache(run: str) -> str:
  """The cache folder of one pytest-xdist run, named after its run id."""
  return os.path.join(tempfile.gettempdir(), f"mmtalker_xla_cache_{run}")


_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
  _CACHE = _shared_cache(_RUN)
  os.makedirs(_CACHE, exist_ok=True)
else:
  _CACHE = tempfile.mkdtemp(prefix="mmtalker_xla_cache_")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
compile_cache.enable(_CACHE)

from configs import tiny  # noqa: E402
from mmtalker_jax.data.synthetic import generate, corpus as synth_corpus  # noqa: E402


@pytest.fixture(scope="session")
def tiny_config():
  return tiny.get_config()


@pytest.fixture()
def one_job_at_a_time(tmp_path_factory):
  """Held while a test runs a multi-process job: pytest-xdist's workers never
  run two at once. Each job meets through its own coordinator, but XLA:CPU
  connects the devices of every job over gloo on loopback ports of the one
  machine. Once, in CI, a job whose peer the test kills aborted on a gloo
  message-size mismatch ("Is there a distributed collective mismatch") while
  another multi-process test ran beside it; that the two jobs were connected
  is not established, but kept apart they cannot be."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  with open(os.path.join(str(base), "multiprocess_job.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


def shared_folder(tmp_path_factory, name: str, build) -> str:
  """A folder all of this session's pytest-xdist workers share: the first worker
  to ask calls build(path) (the others wait for it); pytest rotates it away with
  its other temporary folders."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the session's folder, above each worker's own
  folder = os.path.join(str(base), name)
  with open(folder + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.isdir(folder):
      shutil.rmtree(folder + ".partial", ignore_errors=True)  # a worker that failed
      build(folder + ".partial")
      os.rename(folder + ".partial", folder)
  return folder


@pytest.fixture(scope="session")
def tiny_corpus_root(tmp_path_factory, tiny_config):
  """A read-only tiny corpus; copy it (`corpus_copy`) before changing files."""
  return shared_folder(tmp_path_factory, "synthtalk_tiny", lambda root: generate(
      root, synth_corpus.spec_from_config(tiny_config.data), workers=1))


@pytest.fixture()
def corpus_copy(tiny_corpus_root, tmp_path):
  dst = str(tmp_path / "corpus")
  shutil.copytree(tiny_corpus_root, dst, ignore=shutil.ignore_patterns(".feature_cache"))
  return dst


@pytest.fixture()
def data_cfg(tiny_config, tiny_corpus_root, tmp_path):
  cfg = tiny_config.data.copy_and_resolve_references()
  cfg.root = tiny_corpus_root
  cfg.cache_dir = str(tmp_path / "cache")
  return cfg


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_corpus_root):
  """A tiny run trained 20 steps (checkpoints at 10 and 20), shared read-only; copy to change it."""
  def train(workdir):
    proc = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/tiny.py", "--workdir", workdir,
         f"--config.data.root={tiny_corpus_root}", "--config.train.num_steps=20",
         "--config.train.eval_every=10", "--config.train.log_every=10"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

  return pathlib.Path(shared_folder(tmp_path_factory, "trained_run", train))


def pytest_collection_modifyitems(config, items):
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a test of a minute or more on this machine; "
                          "collected first, so the workers do not end with one of them alone")
  # Under pytest-xdist the controller names the run (its workers share the
  # cache folder named after it), so that it, not the first worker to finish,
  # removes the folder once every worker is done.
  if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
    config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex


def pytest_sessionfinish(session, exitstatus):
  if os.environ.get("PYTEST_XDIST_WORKER"):
    return  # the other worker may still be compiling into the shared cache
  shutil.rmtree(_CACHE, ignore_errors=True)
  run = getattr(session.config.option, "testrunuid", None)
  if run:
    shutil.rmtree(_shared_cache(run), ignore_errors=True)
