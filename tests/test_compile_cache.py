"""The executable store keeps only entries that run, and survives one that does not."""

import glob

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import serialize_executable

from mmtalker_jax import compile_cache


class _FailsWhenRead:
  """What a broken executable returns: the call succeeds, the error comes when the
  output is waited for (XLA runs asynchronously)."""

  def block_until_ready(self):
    raise RuntimeError("INTERNAL: Error dispatching computation: Function f_fusion not found")


def _broken(*_):
  return lambda *args: _FailsWhenRead()


def _program():
  f = jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)
  x = np.linspace(0.0, 1.0, 16, dtype=np.float32)
  return f, x, np.sin(x) * 2.0 + 1.0


def test_a_stored_entry_that_fails_when_run_is_compiled_again(tmp_path, monkeypatch):
  f, x, expected = _program()
  out = compile_cache.ExecutableStore(str(tmp_path), "salt")("f", f, x)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
  assert len(glob.glob(str(tmp_path / "mmtalker-exec-f-*.bin"))) == 1
  # A later process loads the entry, and it turns out broken only once run.
  monkeypatch.setattr(serialize_executable, "deserialize_and_load", _broken)
  out = compile_cache.ExecutableStore(str(tmp_path), "salt")("f", f, x)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)


def test_an_entry_that_does_not_run_when_loaded_back_is_not_written(tmp_path, monkeypatch):
  f, x, expected = _program()
  monkeypatch.setattr(serialize_executable, "deserialize_and_load", _broken)
  out = compile_cache.ExecutableStore(str(tmp_path), "salt")("f", f, x)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
  assert not glob.glob(str(tmp_path / "mmtalker-exec-*"))
