"""The restricted unpickler admits plain data and refuses everything else unexecuted."""

import os
import pickle

import numpy as np
import pytest

from mmtalker_jax import safe_pickle
from mmtalker_jax.errors import InputError


class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_plain_templates_round_trip_in_every_protocol(tmp_path):
  templates = {"A": np.arange(12, dtype=np.float32).reshape(4, 3), "B": np.ones((4, 3))}
  for protocol in (2, 4, 5):
    path = tmp_path / f"t{protocol}.pkl"
    path.write_bytes(pickle.dumps(templates, protocol=protocol))
    out = safe_pickle.load_templates(path)
    assert sorted(out) == ["A", "B"]
    np.testing.assert_array_equal(out["A"], templates["A"])
    assert out["B"].dtype == np.float32


def test_nested_containers_and_numbers_are_admitted():
  obj = {"a": [1, 2.5, "x", (3, None)], "b": {"c": np.int64(4), "d": True}}
  assert safe_pickle.loads(pickle.dumps(obj, protocol=2)) == obj


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "templates.pkl"
  path.write_bytes(pickle.dumps({"A": _Exploit(str(marker))}))
  with pytest.raises(InputError, match=r"templates.pkl: unsafe pickle: refusing to construct io.open"):
    safe_pickle.load_templates(path)
  assert not marker.exists()


def test_os_system_pickle_is_refused(tmp_path):
  payload = b"cos\nsystem\n(S'touch " + str(tmp_path / "x").encode() + b"'\ntR."
  with pytest.raises(InputError, match="refusing to construct os.system|posix.system"):
    safe_pickle.load(_write(tmp_path / "p.pkl", payload))
  assert not os.path.exists(tmp_path / "x")


def test_wrong_template_shape_and_nan_are_reported(tmp_path):
  path = tmp_path / "t.pkl"
  path.write_bytes(pickle.dumps({"A": np.zeros((4, 2))}))
  with pytest.raises(InputError, match=r"subject 'A' has shape \(4, 2\)"):
    safe_pickle.load_templates(path)
  path.write_bytes(pickle.dumps({"A": np.full((4, 3), np.nan)}))
  with pytest.raises(InputError, match="NaN or inf"):
    safe_pickle.load_templates(path)


def test_truncated_pickle_is_reported(tmp_path):
  data = pickle.dumps({"A": np.zeros((40, 3))})
  with pytest.raises(InputError, match="truncated or corrupt"):
    safe_pickle.load(_write(tmp_path / "t.pkl", data[: len(data) // 2]))


def _write(path, data):
  path.write_bytes(data)
  return path
