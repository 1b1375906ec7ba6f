"""Whole-sequence prediction at every vertex, and the metrics table with baselines."""

from __future__ import annotations

from typing import Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmtalker_jax import metrics
from mmtalker_jax.data.corpus import Corpus, Sequence
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.models.mmtalker import MMTalker
from mmtalker_jax.training import sharding

METRICS = ("lve", "eve", "fdd", "fdd_abs", "mve")
INPUTS = ("audio", "template", "style", "frame_mask")


def make_predict_fn(model: MMTalker) -> Callable:
  """jit(params, batch) -> vertices [B,T,V,3] = template + predicted displacement."""

  @jax.jit
  def predict(params, batch):
    disp, _ = model.apply({"params": params}, *(batch[k] for k in INPUTS))
    return batch["template"][:, None] + disp

  return predict


def predict_split(predict: Callable, params, batcher: Batcher, mesh) -> Iterator[tuple[Sequence, dict]]:
  """Yields (sequence, {'pred','gt','template'} [T,V,3]/[V,3] numpy) for a split, in order."""
  for local in batcher.epoch(0):
    batch = sharding.global_batch({k: local[k] for k in INPUTS}, mesh)
    pred = np.asarray(multihost_utils.process_allgather(predict(params, batch), tiled=True))
    rows = multihost_utils.process_allgather(
        {k: local[k] for k in ("seq_index", "vertices", "template")}, tiled=True)
    for r, i in enumerate(np.asarray(rows["seq_index"])):
      if i < 0:
        continue
      seq = batcher.sequences[int(i)]
      t = batcher.corpus.num_frames(seq)
      yield seq, {"pred": pred[r, :t], "gt": np.asarray(rows["vertices"][r, :t]),
                  "template": np.asarray(rows["template"][r])}


class MetricAccumulator:
  """Pools LVE/EVE/MVE over frames and FDD over sequences, one sequence at a time.

  Equal to calling `metrics.*` once on all sequences stacked (frame-weighted).
  """

  def __init__(self, regions: dict[str, np.ndarray]):
    self.regions = regions
    self.frames = 0
    self.sums = {k: 0.0 for k in ("lve", "eve", "mve")}
    self.fdd: list[float] = []

  def add(self, pred: np.ndarray, gt: np.ndarray, template: np.ndarray) -> None:
    """pred, gt: [T,V,3]; template: [V,3]."""
    p, g = pred[None], gt[None]
    t = len(pred)
    self.frames += t
    self.sums["lve"] += metrics.lve(p, g, self.regions["lips"]) * t
    if "eye" in self.regions:
      self.sums["eve"] += metrics.eve(p, g, self.regions["eye"]) * t
    self.sums["mve"] += metrics.mve(p, g) * t
    self.fdd.append(float(metrics.fdd_per_sequence(p, g, template[None],
                                                   self.regions["upper_face"])[0]))

  def result(self) -> dict[str, float]:
    out = {k: v / max(self.frames, 1) for k, v in self.sums.items()}
    if "eye" not in self.regions:
      out["eve"] = float("nan")
    out["fdd"] = float(np.mean(self.fdd))
    out["fdd_abs"] = float(np.mean(np.abs(self.fdd)))
    return {k: out[k] for k in METRICS}


def mean_training_motion(corpus: Corpus) -> np.ndarray:
  """[V,3] mean displacement from the template over every training frame."""
  total = np.zeros((corpus.assets.num_vertices, 3), np.float64)
  frames = 0
  for seq in corpus.split("train"):
    verts = corpus.vertices(seq)
    total += (verts - corpus.template(seq)).sum(axis=0)
    frames += len(verts)
  return (total / max(frames, 1)).astype(np.float32)


def evaluate(predict: Callable, params, batcher: Batcher, mesh, mean_motion: np.ndarray,
             on_sequence: Callable[[Sequence, np.ndarray], None] | None = None) -> dict:
  """Metrics of the model and of two baselines on the batcher's split.

  Returns:
    {'model': {...}, 'static_template': {...}, 'mean_motion': {...},
     'sequences': n}, raw (unscaled) values.
  """
  regions = batcher.corpus.assets.regions
  acc = {name: MetricAccumulator(regions) for name in ("model", "static_template", "mean_motion")}
  n = 0
  for seq, out in predict_split(predict, params, batcher, mesh):
    static = np.broadcast_to(out["template"], out["gt"].shape)
    acc["model"].add(out["pred"], out["gt"], out["template"])
    acc["static_template"].add(static, out["gt"], out["template"])
    acc["mean_motion"].add(static + mean_motion, out["gt"], out["template"])
    if on_sequence is not None:
      on_sequence(seq, out["pred"])
    n += 1
  result = {name: a.result() for name, a in acc.items()}
  result["sequences"] = n
  return result
