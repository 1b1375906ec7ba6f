"""The MMTalker network: shapes, vertex queries, styles, GCN, attention, jit, overfitting."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmtalker_jax import alignment
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.mesh.assets import build_mesh_assets
from mmtalker_jax.models.audio_encoder import pool_to_frames
from mmtalker_jax.models.gcn import normalized_aggregate
from mmtalker_jax.models.sampler import SamplerSettings
from mmtalker_jax.models.mmtalker import MMTalker, build_model
from mmtalker_jax.models.temporal import ALiBiSelfAttention, alibi_slopes
from mmtalker_jax.training.state import TrainState
from mmtalker_jax.training.step import compute_losses, train_step
from tests.meshes import disk_mesh, seamed_atlas

SMALL = dict(width=16, audio_levels=2, conv_kernel=3, gcn_blocks=2, geometry_tokens=4,
             num_heads=2, attention_window=32, attention_block=16, token_window=32,
             regressor_hidden=16, regressor_layers=2, regressor_heads=2,
             regressor_activation="gelu", regressor_rank=4, uv_frequencies=3)
SAMPLER = SamplerSettings(temperature=1.0, epsilon=0.0, learned=True, alpha=1.0)


def small_model(num_vertices, fps=30.0, feature_rate=100.0, num_styles=3, seams=False):
  verts, faces = disk_mesh(num_vertices)
  face_uv = seamed_atlas(verts, faces)[0] if seams else None
  assets = build_mesh_assets(verts, faces, face_uv)
  return MMTalker(assets=assets, num_styles=num_styles, fps=fps, feature_rate=feature_rate,
                  displacement_scale=1e-3, **SMALL)


def inputs(model, b, t, seed=0, n_mels=20):
  rng = np.random.default_rng(seed)
  f = alignment.num_feature_frames(t, model.fps, model.feature_rate)
  return dict(audio=jnp.asarray(rng.standard_normal((b, f, n_mels)), jnp.float32),
              template=jnp.asarray(model.assets.vertices)[None].repeat(b, 0),
              style=jnp.arange(b, dtype=jnp.int32) % model.num_styles,
              frame_mask=jnp.ones((b, t)))


def randomize_output(params, seed=0):
  """The regressor's output layer starts at zero; give it weights so outputs differ."""
  params = flax.core.unfreeze(params)
  for name in ("out", "basis"):
    if name in params["regressor"]:
      k = params["regressor"][name]["kernel"]
      params["regressor"][name]["kernel"] = jax.random.normal(jax.random.key(seed), k.shape) * 0.5
  return params


def init(model, x):
  return jax.jit(model.init)({"params": jax.random.key(0)}, **x)["params"]


def apply(model, params, x, **kwargs):
  """Jitted forward pass (eager dispatch compiles every op separately)."""
  fn = jax.jit(lambda p, x, rngs: model.apply({"params": p}, **x, **kwargs, rngs=rngs))
  return fn(params, x, {"sample": jax.random.key(1)})


@pytest.mark.parametrize("b,t,v,k,fps,rate", [
    (1, 30, 120, 16, 30.0, 100.0), (3, 47, 300, 64, 25.0, 100.0), (2, 64, 200, 33, 30.0, 50.0)])
def test_output_shapes(b, t, v, k, fps, rate):
  model = small_model(v, fps, rate)
  x = inputs(model, b, t)
  params = randomize_output(init(model, x))
  disp, aux = apply(model, params, x, points=None, num_points=k, sampler=SAMPLER)
  assert disp.shape == (b, t, k, 3) and np.isfinite(disp).all()
  assert aux["face_ids"].shape == (k,) and aux["bary"].shape == (k, 3)
  assert aux["weights"].shape == (k,) and aux["template"].shape == (b, k, 3)
  assert params["face_logits"].shape == (model.assets.num_faces,)
  full, _ = apply(model, params, x)
  assert full.shape == (b, t, v, 3)
  assert np.abs(full).max() > 0


def incident_faces(faces, vertex, face_uv, uv):
  """Faces around `vertex` whose corner there has UV `uv` (same island) and the others."""
  same, other = [], []
  for f in np.flatnonzero((faces == vertex).any(1)):
    c = list(faces[f]).index(vertex)
    (same if np.allclose(face_uv[f, c], uv, atol=1e-6) else other).append((f, c))
  return same, other


def test_vertex_query_equals_points_at_the_vertices_through_any_face_of_its_island():
  model = small_model(150, seams=True)
  assets = model.assets
  x = inputs(model, 2, 40)
  params = randomize_output(init(model, x))
  full, aux = apply(model, params, x)
  np.testing.assert_allclose(aux["template"], x["template"], atol=1e-6)
  # Each vertex through the LAST incident face on its own island (vertex_points
  # takes the first), and seam vertices also through a face of the other island.
  first = assets.vertex_points()[0]
  face_ids, bary = np.zeros(150, np.int32), np.zeros((150, 3), np.float32)
  seam = []
  for v in range(150):
    same, other = incident_faces(assets.faces, v, assets.face_uv, assets.vertex_uv[v])
    face_ids[v], c = same[-1]
    bary[v, c] = 1.0
    if other:
      seam.append((v, *other[0]))
  assert (face_ids != first).sum() > 100 and len(seam) >= 5
  at_points, _ = apply(model, params, x, points=(face_ids, bary))
  np.testing.assert_allclose(at_points, full, rtol=1e-4, atol=1e-7)
  # Across the seam a point takes the other island's UV: the network sees another input.
  v, f, c = zip(*seam)
  b = np.eye(3, dtype=np.float32)[list(c)]
  across, _ = apply(model, params, x, points=(np.array(f, np.int32), b))
  assert np.abs(np.asarray(across) - np.asarray(full)[:, :, list(v)]).max() > 1e-4


def test_style_changes_the_output_and_padding_is_zero():
  model = small_model(100)
  x = inputs(model, 2, 30)
  x["style"] = jnp.array([0, 0])
  x["frame_mask"] = x["frame_mask"].at[1, 25:].set(0)
  params = randomize_output(init(model, x))
  same, _ = apply(model, params, x)
  other, _ = apply(model, params, dict(x, style=jnp.array([0, 2])))
  np.testing.assert_allclose(other[0], same[0], rtol=1e-5, atol=1e-8)
  assert np.abs(other[1] - same[1]).max() > 1e-6
  assert not np.asarray(same[1, 25:]).any()


def test_gcn_aggregation_matches_the_dense_normalized_adjacency():
  verts, faces = disk_mesh(60)
  assets = build_mesh_assets(verts, faces)
  g = assets.graph
  adj = np.zeros((60, 60))
  adj[g.senders, g.receivers] = 1
  adj += np.eye(60)
  d = adj.sum(1)
  dense = adj / np.sqrt(d[:, None] * d[None, :])
  x = np.random.default_rng(0).standard_normal((2, 60, 5)).astype(np.float32)
  out = normalized_aggregate(g, assets.gcn_scale, jnp.asarray(x))
  np.testing.assert_allclose(out, np.einsum("uv,bvc->buc", dense, x), rtol=1e-5, atol=1e-5)
  # Its gradient (a custom rule: the sum over reversed edges) and its vmap (a
  # custom rule: the mapped axis folded into the features), nested as a
  # sweep's train step nests them, against the dense operator.
  w = np.random.default_rng(1).standard_normal((3, 2, 60, 5)).astype(np.float32)
  xs = np.stack([x, 2 * x, -x])
  value_and_grad = jax.vmap(jax.value_and_grad(
      lambda x, w: jnp.sum(jnp.sin(normalized_aggregate(g, assets.gcn_scale, x)) * w)))
  values, grads = jax.jit(value_and_grad)(jnp.asarray(xs), jnp.asarray(w))
  y = np.einsum("uv,mbvc->mbuc", dense, xs)
  np.testing.assert_allclose(values, np.sum(np.sin(y) * w, axis=(1, 2, 3)), rtol=1e-4)
  np.testing.assert_allclose(grads, np.einsum("uv,mbuc->mbvc", dense, np.cos(y) * w),
                             rtol=1e-4, atol=1e-5)


def _dense_alibi(params, x, mask, heads, window):
  qkv = jnp.einsum("btd,dshe->btshe", x, params["qkv"]["kernel"]) + params["qkv"]["bias"]
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  t = x.shape[1]
  dist = np.abs(np.arange(t)[:, None] - np.arange(t)[None])
  logits = jnp.einsum("bqhd,bkhd->bhqk", q / np.sqrt(q.shape[-1]), k)
  logits = logits - alibi_slopes(heads)[:, None, None] * dist
  allowed = (dist <= window)[None, None] & mask.astype(bool)[:, None, None, :]
  attn = jax.nn.softmax(jnp.where(allowed, logits, -1e9), -1)
  out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(x.shape[0], t, -1)
  return out @ params["out"]["kernel"] + params["out"]["bias"]


@pytest.mark.parametrize("t,window,block", [(30, 192, 64), (200, 50, 16), (131, 40, 64)])
def test_blocked_alibi_attention_is_exact(t, window, block):
  layer = ALiBiSelfAttention(4, window, block)
  x = jax.random.normal(jax.random.key(0), (2, t, 32))
  mask = jnp.ones((2, t)).at[1, t - 7:].set(0)
  params = layer.init(jax.random.key(1), x, mask)
  np.testing.assert_allclose(layer.apply(params, x, mask),
                             _dense_alibi(params["params"], x, mask, 4, window), atol=2e-5)


def test_temporal_attention_runs_at_9000_frames_with_the_same_weights():
  layer = ALiBiSelfAttention(4, 192, 64)
  params = layer.init(jax.random.key(1), jnp.zeros((1, 30, 64)), jnp.ones((1, 30)))
  x = jax.random.normal(jax.random.key(2), (1, 9000, 64))
  out = jax.jit(layer.apply)(params, x, jnp.ones((1, 9000)))
  assert out.shape == (1, 9000, 64) and np.isfinite(out).all()
  # Attention is local: frames far from a change do not see it.
  out2 = jax.jit(layer.apply)(params, x.at[:, 0].set(5.0), jnp.ones((1, 9000)))
  assert np.abs(out2[0, 1000:] - out[0, 1000:]).max() == 0


def test_pooling_puts_each_feature_in_its_frame():
  for fps, rate in [(30.0, 100.0), (25.0, 100.0), (30.0, 50.0)]:
    t = 20
    f = alignment.num_feature_frames(t, fps, rate)
    ids = alignment.feature_to_frame(f, fps, rate)
    x = jnp.zeros((1, f, 1)).at[0, f // 2, 0].set(1.0)
    pooled = pool_to_frames(x, t, fps, rate)
    assert int(jnp.argmax(pooled[0, :, 0])) == ids[f // 2]
    np.testing.assert_allclose(pooled[0, :, 0].sum() * np.bincount(ids)[ids[f // 2]], 1.0, rtol=1e-6)


def test_jit_compiles_once_per_input_shape():
  model = small_model(80)
  traces = []

  @jax.jit
  def forward(params, x):
    traces.append(1)
    return model.apply({"params": params}, **x)[0]

  x = inputs(model, 2, 30)
  params = init(model, x)
  forward(params, x)
  forward(params, inputs(model, 2, 30, seed=1))
  assert len(traces) == 1
  forward(params, inputs(model, 2, 60))
  assert len(traces) == 2


def test_sampler_logits_get_a_finite_nonzero_gradient_from_the_loss(tiny_config, data_cfg):
  corpus = Corpus(data_cfg)
  batch = next(Batcher(corpus, "train", 2, data_cfg.bucket_frames, train=False).epoch(0))
  config = tiny_config.copy_and_resolve_references()
  config.model.update(SMALL)
  model = build_model(config, corpus.assets, len(corpus.train_subjects))
  x = {k: batch[k] for k in ("audio", "template", "style", "frame_mask")}
  params = init(model, x)
  grads = jax.jit(jax.grad(
      lambda p: compute_losses(p, model, batch, jax.random.key(1), config.loss, 64,
                               SAMPLER)[0]))(params)
  g = np.asarray(grads["face_logits"])
  assert np.isfinite(g).all() and np.abs(g).max() > 0
  for leaf in jax.tree_util.tree_leaves(grads):
    assert np.isfinite(leaf).all()


def test_overfits_a_handful_of_sequences(tiny_config, data_cfg):
  """The all-vertex error on 4 SynthTalk sequences falls at least 10x within 150 steps
  (checked every 25 steps; the loss falls 10x with it)."""
  corpus = Corpus(data_cfg)
  batch = next(Batcher(corpus, "train", 4, data_cfg.bucket_frames, train=False).epoch(0))
  model = build_model(tiny_config, corpus.assets, len(corpus.train_subjects))
  x = {k: batch[k] for k in ("audio", "template", "style", "frame_mask")}
  params = init(model, x)

  @jax.jit
  def vertex_error(params):
    disp, _ = model.apply({"params": params}, **x)
    target = batch["vertices"] - batch["template"][:, None]
    err = jnp.sum((disp - target) ** 2, -1).mean(-1)
    return jnp.sum(err * batch["frame_mask"]) / jnp.sum(batch["frame_mask"])

  optimizer = optax.adam(3e-3)
  state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  step = jax.jit(functools.partial(train_step, model=model, optimizer=optimizer,
                                   loss_cfg=tiny_config.loss, num_points=128,
                                   sampler=SAMPLER))
  before = float(vertex_error(params))
  losses = []
  while len(losses) < 150:
    for _ in range(25):
      state, metrics = step(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss"]))
    after = float(vertex_error(state.params))
    if after < before / 10 and np.mean(losses[-10:]) < np.mean(losses[:10]) / 10:
      break
  assert np.isfinite(losses).all()
  assert after < before / 10, (before, after)
  assert np.mean(losses[-10:]) < np.mean(losses[:10]) / 10


def padded(x, t_pad, floor):
  """x (one sequence, all frames real) padded to t_pad frames the way the pipeline pads."""
  model_f = x["audio"].shape[1]
  f_pad = alignment.num_feature_frames(t_pad, 30.0, 100.0)
  t = x["frame_mask"].shape[1]
  audio = jnp.pad(x["audio"], ((0, 0), (0, f_pad - model_f), (0, 0)), constant_values=floor)
  mask = jnp.pad(x["frame_mask"], ((0, 0), (0, t_pad - t)))
  return dict(x, audio=audio, frame_mask=mask)


def test_padding_changes_nothing_alone_in_any_bucket_or_batch_position():
  model = small_model(120, seams=True)
  floor = float(np.log(1e-6))
  x = inputs(model, 1, 37, seed=3)
  params = randomize_output(init(model, x))
  forward = jax.jit(lambda p, x: model.apply({"params": p}, **x)[0])  # one compile per shape
  alone = np.asarray(forward(params, x))[0]
  motion = np.abs(alone - np.asarray(x["template"])[0]).max()
  assert motion > 1e-3
  for t_pad in (40, 100):  # within the first block; across several blocks
    out = np.asarray(forward(params, padded(x, t_pad, floor)))[0, :37]
    np.testing.assert_allclose(out, alone, atol=1e-5 * motion)
  # In a batch of three of bucket 64, at every position, beside other sequences.
  others = inputs(model, 2, 64, seed=4)
  one = padded(x, 64, floor)
  for pos in range(3):
    batch = {k: jnp.concatenate([others[k][:pos], one[k], others[k][pos:]]) for k in x}
    out = np.asarray(forward(params, batch))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[pos, :37], alone, atol=1e-5 * motion)


def test_long_input_is_local_the_start_ignores_audio_minutes_later():
  # Every stage that mixes time is windowed: frames early in a long sequence
  # come out the same whatever the audio far later says (the receptive field
  # here is under 200 frames), so long files behave like short ones.
  model = small_model(80)
  x = inputs(model, 1, 640, seed=5)
  params = randomize_output(init(model, x))
  forward = jax.jit(lambda p, x: model.apply({"params": p}, **x)[0])
  out = np.asarray(forward(params, x))[0]
  f_cut = alignment.num_feature_frames(400, 30.0, 100.0)
  noise = jax.random.normal(jax.random.key(9), (1, x["audio"].shape[1] - f_cut, 20))
  other = np.asarray(forward(params, dict(x, audio=x["audio"].at[:, f_cut:].set(noise))))[0]
  motion = np.abs(out - np.asarray(x["template"])[0]).max()
  np.testing.assert_allclose(other[:200], out[:200], atol=1e-5 * motion)
  assert np.abs(other[400:] - out[400:]).max() > 1e-3 * motion  # where the audio changed
