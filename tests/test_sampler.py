"""The triangle sampler: distribution, points, unbiased weights, gradients, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax.models.sampler import area_logits, sample_triangles

AREAS = jnp.array([1.0, 2.0, 0.5, 4.0, 0.25, 1.25, 3.0, 0.0001, 2.0, 1.0])


def test_face_frequencies_match_softmax_of_logits():
  logits = jax.random.normal(jax.random.key(0), (10,)) * 1.5
  n = 200_000
  for temperature in (1.0, 2.0):
    s = jax.jit(sample_triangles, static_argnums=(3,))(logits, AREAS, jax.random.key(1), n, temperature)
    freq = np.bincount(np.asarray(s.face_ids), minlength=10) / n
    p = np.asarray(jax.nn.softmax(logits / temperature))
    # Each frequency within 5 binomial standard deviations (+1e-4 for tiny p).
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-4)


def test_points_lie_inside_their_triangles_uniformly():
  s = sample_triangles(jnp.zeros(10), AREAS, jax.random.key(2), 50_000)
  bary = np.asarray(s.bary)
  assert (bary >= 0).all() and np.allclose(bary.sum(1), 1, atol=1e-6)
  # Uniform in a triangle: each barycentric coordinate has mean 1/3, variance 1/18.
  np.testing.assert_allclose(bary.mean(0), 1 / 3, atol=0.01)
  np.testing.assert_allclose(bary.var(0), 1 / 18, atol=0.01)


def test_area_initialisation_samples_by_area_with_unit_weights():
  for temperature in (1.0, 0.5):
    logits = jnp.asarray(area_logits(np.asarray(AREAS), temperature))
    s = sample_triangles(logits, AREAS, jax.random.key(3), 1000, temperature)
    np.testing.assert_allclose(s.weights, 1.0, rtol=1e-4)


def test_weighted_mean_is_an_unbiased_estimate_of_the_area_integral():
  error = jnp.array([5.0, 0.1, 2.0, 0.3, 9.0, 1.0, 0.0, 7.0, 0.5, 3.0])
  truth = float(jnp.sum(AREAS * error) / jnp.sum(AREAS))
  logits = jax.random.normal(jax.random.key(4), (10,)) * 2.0
  keys = jax.random.split(jax.random.key(5), 400)
  estimate = jax.vmap(lambda k: jnp.mean(
      (lambda s: s.weights * error[s.face_ids])(sample_triangles(logits, AREAS, k, 512))))(keys)
  mean, sem = float(estimate.mean()), float(estimate.std() / np.sqrt(len(keys)))
  assert abs(mean - truth) < 4 * sem + 1e-3, (mean, truth, sem)


def test_logit_gradient_is_finite_nonzero_and_points_toward_the_error():
  error = jnp.array([0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
  logits = jnp.asarray(area_logits(np.asarray(AREAS)))

  def loss(lg, key):
    s = sample_triangles(lg, AREAS, key, 4096)
    return jnp.mean(s.weights * error[s.face_ids])

  grad = jax.grad(loss)(logits, jax.random.key(6))
  assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
  # Descending the gradient raises the probability of the face holding the error.
  assert grad[3] < 0 and (np.delete(np.asarray(grad), 3) >= 0).all()


def test_vmap_over_keys_and_logits_and_static_point_count():
  keys = jax.random.split(jax.random.key(7), 3)
  logits = jnp.stack([jnp.zeros(10), jnp.arange(10.0), -jnp.arange(10.0)])
  fn = jax.jit(jax.vmap(lambda lg, k: sample_triangles(lg, AREAS, k, 32)))
  s = fn(logits, keys)
  assert s.face_ids.shape == (3, 32) and s.bary.shape == (3, 32, 3) and s.weights.shape == (3, 32)
  # The second density favours high face ids, the third low ones.
  assert s.face_ids[1].mean() > s.face_ids[2].mean()
