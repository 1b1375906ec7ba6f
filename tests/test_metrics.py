"""Metrics against hand-computed cases (DESIGN section 3)."""

import jax.numpy as jnp
import numpy as np
import pytest

from mmtalker_jax import metrics


def _pair():
  gt = np.zeros((2, 3, 4, 3))
  pred = np.zeros((2, 3, 4, 3))
  # Sequence 0: frame errors on vertex 1 of 1, 2, 3 (squared 1, 4, 9); vertex 2 of 0.5.
  pred[0, :, 1, 0] = [1.0, 2.0, 3.0]
  pred[0, :, 2, 1] = 0.5
  # Sequence 1: a 3-4-5 error on vertex 0 in frame 0 only.
  pred[1, 0, 0] = [3.0, 4.0, 0.0]
  return pred, gt


def test_lve_is_frame_weighted_mean_of_max_squared_lip_error():
  pred, gt = _pair()
  lips = [1, 2]
  # Per-frame max over lips of squared distance: seq0 [1, 4, 9], seq1 [0, 0, 0].
  assert metrics.lve(pred, gt, lips) == pytest.approx((1 + 4 + 9) / 6)
  # Vertex 0 only: seq0 frames 0, seq1 frame0 = 25.
  assert metrics.lve(pred, gt, [0]) == pytest.approx(25 / 6)


def test_masked_frames_never_enter_the_mean():
  pred, gt = _pair()
  mask = np.array([[1, 1, 0], [1, 0, 0]])
  # seq0 frames 0,1 -> 1, 4 ; seq1 frame 0 -> 0 ; mean over 3 real frames.
  assert metrics.lve(pred, gt, [1, 2], mask) == pytest.approx(5 / 3)
  pred[0, 2] = 1e6  # garbage in a padded frame changes nothing
  assert metrics.lve(pred, gt, [1, 2], mask) == pytest.approx(5 / 3)
  assert metrics.mve(pred, gt, mask) == pytest.approx(
      metrics.mve(pred[:, :2], gt[:, :2], mask[:, :2]))


def test_eve_uses_the_lve_formula_on_eye_vertices():
  pred, gt = _pair()
  assert metrics.eve(pred, gt, [2]) == pytest.approx(0.25 * 3 / 6)


def test_mve_is_mean_unsquared_distance_over_frames_and_vertices():
  pred, gt = _pair()
  total = (1 + 2 + 3) + 3 * 0.5 + 5.0
  assert metrics.mve(pred, gt) == pytest.approx(total / (2 * 3 * 4))


def test_fdd_signed_and_absolute_by_hand():
  templates = np.zeros((2, 2, 3))
  gt = np.zeros((2, 4, 2, 3))
  pred = np.zeros((2, 4, 2, 3))
  # Seq 0, vertex 0: gt moves to distance 0,1,0,1 (m = 0,1,0,1 -> std 0.5).
  gt[0, [1, 3], 0, 0] = 1.0
  # Seq 1, vertex 1: pred moves sqrt(2) in frame 0 (m = 2,0,0,0 -> std sqrt(0.75)).
  pred[1, 0, 1, 0] = np.sqrt(2.0)
  upper = [0, 1]
  per_seq = metrics.fdd_per_sequence(pred, gt, templates, upper)
  np.testing.assert_allclose(per_seq, [0.5 / 2, -np.sqrt(0.75) / 2])
  assert metrics.fdd(pred, gt, templates, upper) == pytest.approx(np.mean(per_seq))
  assert metrics.fdd_abs(pred, gt, templates, upper) == pytest.approx(np.mean(np.abs(per_seq)))


def test_fdd_std_uses_only_real_frames():
  templates = np.zeros((1, 1, 3))
  gt = np.zeros((1, 4, 1, 3))
  gt[0, 1, 0, 0] = 1.0  # m = 0, 1 on the two real frames -> std 0.5
  gt[0, 3, 0, 0] = 7.0  # padded frame
  pred = np.zeros_like(gt)
  mask = np.array([[1, 1, 0, 0]])
  assert metrics.fdd(pred, gt, templates, [0], mask) == pytest.approx(0.5)


def test_metrics_accept_jax_arrays_and_return_python_floats():
  pred, gt = _pair()
  value = metrics.lve(jnp.asarray(pred), jnp.asarray(gt), jnp.array([1, 2]))
  assert isinstance(value, float)
  assert value == pytest.approx(metrics.lve(pred, gt, [1, 2]))


def test_shape_mismatch_is_refused():
  pred, gt = _pair()
  with pytest.raises(ValueError, match="N,T,V,3"):
    metrics.mve(pred[:, :2], gt)
