"""The triangle sampler: exact distribution, points, weights, the logits' gradient, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmtalker_jax import losses
from mmtalker_jax.models.sampler import area_logits, face_log_probs, sample_triangles

AREAS = jnp.array([1.0, 2.0, 0.5, 4.0, 0.25, 1.25, 3.0, 0.0001, 2.0, 1.0])


def expected_p(logits, temperature, epsilon, learned=True):
  p_area = np.asarray(AREAS / AREAS.sum())
  q = np.asarray(jax.nn.softmax(logits / temperature)) if learned else p_area
  return (1 - epsilon) * q + epsilon * p_area


@pytest.mark.parametrize("temperature,epsilon,learned", [
    (1.0, 0.0, True), (2.0, 0.0, True), (0.5, 0.2, True), (1.0, 0.5, True), (1.0, 0.0, False)])
def test_face_frequencies_match_the_mixed_distribution(temperature, epsilon, learned):
  logits = jax.random.normal(jax.random.key(0), (10,)) * 1.5
  n = 200_000
  draw = jax.jit(sample_triangles, static_argnums=(3,))
  s = draw(logits, AREAS, jax.random.key(1), n, temperature, epsilon, learned)
  freq = np.bincount(np.asarray(s.face_ids), minlength=10) / n
  p = expected_p(logits, temperature, epsilon, learned)
  np.testing.assert_allclose(np.exp(s.log_p), p[np.asarray(s.face_ids)], rtol=1e-5)
  # Each frequency within 5 binomial standard deviations (+1e-4 for tiny p).
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-4)


def test_two_level_draw_is_exact_at_many_faces():
  # 1000 faces in blocks of 32: a peaked distribution, checked on its heaviest faces.
  f = 1000
  logits = jnp.where(jnp.arange(f) % 97 == 3, 6.0, 0.0)
  areas = jnp.ones(f)
  n = 100_000
  s = jax.jit(sample_triangles, static_argnums=(3,))(logits, areas, jax.random.key(8), n)
  freq = np.bincount(np.asarray(s.face_ids), minlength=f) / n
  p = np.asarray(jax.nn.softmax(logits))
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 2e-4)
  assert np.asarray(s.face_ids).max() < f


def test_points_are_prefix_stable_in_the_point_count():
  logits = jax.random.normal(jax.random.key(0), (10,))
  small = sample_triangles(logits, AREAS, jax.random.key(3), 64)
  large = sample_triangles(logits, AREAS, jax.random.key(3), 256)
  np.testing.assert_array_equal(large.face_ids[:64], small.face_ids)
  np.testing.assert_array_equal(large.bary[:64], small.bary)


def test_points_lie_inside_their_triangles_uniformly():
  s = sample_triangles(jnp.zeros(10), AREAS, jax.random.key(2), 50_000)
  bary = np.asarray(s.bary)
  assert (bary >= 0).all() and np.allclose(bary.sum(1), 1, atol=1e-6)
  # Uniform in a triangle: each barycentric coordinate has mean 1/3, variance 1/18.
  np.testing.assert_allclose(bary.mean(0), 1 / 3, atol=0.01)
  np.testing.assert_allclose(bary.var(0), 1 / 18, atol=0.01)


def test_area_sampling_has_unit_weights_and_the_floor_bounds_them():
  for temperature in (1.0, 0.5):
    logits = jnp.asarray(area_logits(np.asarray(AREAS), temperature))
    s = sample_triangles(logits, AREAS, jax.random.key(3), 1000, temperature)
    np.testing.assert_allclose(s.weights, 1.0, rtol=1e-4)
  s = sample_triangles(jnp.zeros(10), AREAS, jax.random.key(3), 1000, learned=False)
  np.testing.assert_allclose(s.weights, 1.0, rtol=1e-4)
  peaked = jnp.zeros(10).at[3].set(8.0)  # other faces drawn rarely: large weights
  for epsilon in (0.1, 0.25):
    w = sample_triangles(peaked, AREAS, jax.random.key(4), 4096, epsilon=epsilon).weights
    assert float(w.max()) <= 1 / epsilon * (1 + 1e-5)
  assert float(sample_triangles(peaked, AREAS, jax.random.key(4), 4096).weights.max()) > 100


def test_weighted_mean_is_an_unbiased_estimate_of_the_area_integral():
  error = jnp.array([5.0, 0.1, 2.0, 0.3, 9.0, 1.0, 0.0, 7.0, 0.5, 3.0])
  truth = float(jnp.sum(AREAS * error) / jnp.sum(AREAS))
  logits = jax.random.normal(jax.random.key(4), (10,)) * 2.0
  keys = jax.random.split(jax.random.key(5), 400)
  for epsilon in (0.0, 0.3):
    estimate = jax.vmap(lambda k: jnp.mean((lambda s: s.weights * error[s.face_ids])(
        sample_triangles(logits, AREAS, k, 512, 1.0, epsilon))))(keys)
    mean, sem = float(estimate.mean()), float(estimate.std() / np.sqrt(len(keys)))
    assert abs(mean - truth) < 4 * sem + 1e-3, (epsilon, mean, truth, sem)


def surrogate_loss(logits, key, error, num_points=4096, epsilon=0.0):
  """The density surrogate for a per-face error (one frame, one row)."""
  s = sample_triangles(logits, AREAS, key, num_points, 1.0, epsilon)
  e = error[s.face_ids]
  pred, target = jnp.sqrt(e)[None, None, :, None], jnp.zeros((1, 1, num_points, 1))
  return losses.density_surrogate(pred, target, s.weights, s.log_p, jnp.ones((1, 1)))


def test_surrogate_is_zero_and_moves_the_logits_toward_the_error():
  error = jnp.array([0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
  logits = jnp.asarray(area_logits(np.asarray(AREAS)))
  value, grad = jax.value_and_grad(surrogate_loss)(logits, jax.random.key(6), error)
  assert float(value) == 0.0
  assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
  # Descending the gradient raises the probability of the face holding the error.
  assert grad[3] < 0 and (np.delete(np.asarray(grad), 3) >= 0).all()


def test_surrogate_gradient_equals_that_of_differentiable_weights():
  # For the same points, the surrogate's gradient is exactly the gradient the
  # logits get from mean(w * e) when w = p_area / p is differentiated.
  error = jnp.array([5.0, 0.1, 2.0, 0.3, 9.0, 1.0, 0.0, 7.0, 0.5, 3.0])
  logits = jax.random.normal(jax.random.key(4), (10,))
  key = jax.random.key(9)

  def through_weights(lg):
    s = sample_triangles(lg, AREAS, key, 512, 1.0, 0.2)
    w = jnp.exp(jnp.log(AREAS[s.face_ids] / AREAS.sum()) - s.log_p)
    return jnp.mean(w * error[s.face_ids])

  np.testing.assert_allclose(jax.grad(surrogate_loss)(logits, key, error, 512, 0.2),
                             jax.grad(through_weights)(logits), rtol=1e-4, atol=1e-7)


def test_vmap_over_keys_logits_and_settings_with_a_static_point_count():
  keys = jax.random.split(jax.random.key(7), 3)
  logits = jnp.stack([jnp.zeros(10), jnp.arange(10.0), -jnp.arange(10.0)])
  temperature = jnp.array([1.0, 0.5, 2.0])
  epsilon = jnp.array([0.0, 0.1, 0.2])
  fn = jax.jit(jax.vmap(lambda lg, k, t, e: sample_triangles(lg, AREAS, k, 32, t, e)))
  s = fn(logits, keys, temperature, epsilon)
  assert s.face_ids.shape == (3, 32) and s.bary.shape == (3, 32, 3) and s.weights.shape == (3, 32)
  # The second density favours high face ids, the third low ones.
  assert s.face_ids[1].mean() > s.face_ids[2].mean()
  # Each member is the draw it would make on its own.
  alone = sample_triangles(logits[1], AREAS, keys[1], 32, 0.5, 0.1)
  np.testing.assert_array_equal(s.face_ids[1], alone.face_ids)
  np.testing.assert_allclose(face_log_probs(logits[1], AREAS, 0.5, 0.1)[alone.face_ids],
                             alone.log_p, rtol=1e-6)
