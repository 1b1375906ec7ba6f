"""The package's layers: what may import what, and what prediction loads."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "mmtalker_jax")


def imported_modules(folder: str) -> dict[str, set[str]]:
  """{file: every mmtalker_jax module it imports, at any depth of the file}."""
  out = {}
  for dirpath, _, files in os.walk(os.path.join(PACKAGE, folder)):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(dirpath, name)
      tree = ast.parse(open(path, encoding="utf-8").read())
      found = set()
      for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
          found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
          found |= {a.name for a in node.names}
      out[os.path.relpath(path, ROOT)] = {m for m in found if m.startswith("mmtalker_jax")}
  return out


@pytest.mark.parametrize("layer,forbidden", [
    ("models", "mmtalker_jax.data"), ("mesh", "mmtalker_jax.data"),
    ("data", "mmtalker_jax.viz"), ("models", "mmtalker_jax.training"),
    ("inference", "mmtalker_jax.data.synthetic")])
def test_layer_does_not_import(layer, forbidden):
  bad = {f: sorted(m for m in mods if m == forbidden or m.startswith(forbidden + "."))
         for f, mods in imported_modules(layer).items()}
  assert not {f: m for f, m in bad.items() if m}


def test_prediction_loads_neither_the_trainer_nor_the_generator_nor_heavy_libraries():
  code = ("import sys, mmtalker_jax.inference, mmtalker_jax.inference.predictor, "
          "mmtalker_jax.training.restore; "
          "print(' '.join(m for m in sys.modules))")
  loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()
  assert "mmtalker_jax.training.restore" in loaded
  ours = [m for m in loaded if m.startswith("mmtalker_jax")]
  assert not [m for m in ours if m.startswith(("mmtalker_jax.training.trainer",
                                               "mmtalker_jax.training.evaluation",
                                               "mmtalker_jax.training.optimizer",
                                               "mmtalker_jax.training.state",
                                               "mmtalker_jax.data.synthetic",
                                               "mmtalker_jax.viz"))]
  heavy = ("optax", "matplotlib", "librosa", "numba", "scipy.signal", "scipy.fft", "scipy.sparse",
           "trimesh")
  assert not [m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)]


def test_configs_and_the_trainer_load_no_corpus_generator():
  """Configs name a SynthSpec; scipy and numba load only when a corpus is written."""
  code = ("import sys; from configs import tiny; import mmtalker_jax.training.trainer; "
          "tiny.get_config(); print(' '.join(m for m in sys.modules))")
  loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.split()
  assert "mmtalker_jax.data.synthetic.spec" in loaded
  assert "mmtalker_jax.data.synthetic.corpus" not in loaded
  assert not [m for m in loaded if m.startswith(("numba", "scipy.signal", "scipy.spatial"))]
