"""Whole-sequence prediction at every vertex, and the metrics table with baselines."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping

import flax.linen as nn
import numpy as np
from jax.experimental import multihost_utils

from mmtalker_jax import metrics
from mmtalker_jax.data import long_form
from mmtalker_jax.data.corpus import Corpus, Sequence
from mmtalker_jax.data.pipeline import Batcher
from mmtalker_jax.inference.decoder import ChunkedDecoder
from mmtalker_jax.inference.predictor import Predictor
from mmtalker_jax.models.registry import inputs_of
from mmtalker_jax.training import sharding

METRICS = ("lve", "eve", "fdd", "fdd_abs", "mve")
# With `bilabial`: the lip-opening error at bilabial key frames (keymotion/closure.py).
BILABIAL = "bilabial"


def metrics_of(result: dict) -> tuple[str, ...]:
  """The metrics a result's rows hold: METRICS, and BILABIAL when it was asked for."""
  first = next(v for v in result.values() if isinstance(v, dict))
  return METRICS + ((BILABIAL,) if BILABIAL in first else ())


def make_decoder(model: nn.Module, chunk_mib: float) -> ChunkedDecoder:
  """The chunked decoder, gathering every host's rows (evaluation runs on all hosts)."""
  return ChunkedDecoder(model, chunk_mib,
                        to_host=lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)))


def predict_split(decoder: ChunkedDecoder | Mapping[str, ChunkedDecoder],
                  params: dict[str, Any], batcher: Batcher,
                  mesh) -> Iterator[tuple[Sequence, dict]]:
  """Yields (sequence, {'preds': {row: [T,V,3]}, 'gt': [T,V,3], 'template': [V,3]}) in order.

  Args:
    decoder: one decoder for every row, or {row name: its decoder} (rows of
      different models).
    params: {row name: parameters}; each batch is decoded once per entry.
  """
  decoders = decoder if isinstance(decoder, Mapping) else {row: decoder for row in params}
  names = sorted({k for d in decoders.values() for k in inputs_of(d.model)})
  for local in batcher.epoch(0):
    batch = sharding.global_batch({k: local[k] for k in names}, mesh)
    preds = {row: decoders[row](p, batch) for row, p in params.items()}
    rows = multihost_utils.process_allgather(
        {k: local[k] for k in ("seq_index", "vertices", "template")}, tiled=True)
    for r, i in enumerate(np.asarray(rows["seq_index"])):
      if i < 0:
        continue
      seq = batcher.sequences[int(i)]
      t = batcher.corpus.num_frames(seq)
      yield seq, {"preds": {row: pred[r, :t] for row, pred in preds.items()},
                  "gt": np.asarray(rows["vertices"][r, :t]),
                  "template": np.asarray(rows["template"][r])}


class MetricAccumulator:
  """Pools LVE/EVE/MVE over frames and FDD over sequences, one sequence at a time.

  Equal to calling `metrics.*` once on all sequences stacked (frame-weighted).
  With `lips` = (upper, lower) lip bands it also pools the bilabial closure
  error (keymotion/closure.py) of sequences given their key visemes.
  """

  def __init__(self, regions: dict[str, np.ndarray],
               lips: tuple[np.ndarray, np.ndarray] | None = None):
    from mmtalker_jax.keymotion.closure import ClosureAccumulator

    self.regions = regions
    self.frames = 0
    self.sums = {k: 0.0 for k in ("lve", "eve", "mve")}
    self.fdd: list[float] = []
    self.closure = ClosureAccumulator(*lips) if lips is not None else None

  def add(self, pred: np.ndarray, gt: np.ndarray, template: np.ndarray,
          key_visemes: np.ndarray | None = None) -> None:
    """pred, gt: [T,V,3]; template: [V,3]; key_visemes: [T] (with `lips`)."""
    if self.closure is not None:
      self.closure.add(pred, gt, key_visemes)
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
    if self.closure is not None:
      out[BILABIAL] = self.closure.result()
    return {k: out[k] for k in METRICS + ((BILABIAL,) if self.closure is not None else ())}


def mean_training_motion(corpus: Corpus) -> np.ndarray:
  """[V,3] mean displacement from the template over every training frame."""
  total = np.zeros((corpus.assets.num_vertices, 3), np.float64)
  frames = 0
  for seq in corpus.split("train"):
    verts = corpus.vertices(seq)
    total += (verts - corpus.template(seq)).sum(axis=0)
    frames += len(verts)
  return (total / max(frames, 1)).astype(np.float32)


def score(outputs: Iterable[tuple[Any, dict]], regions: dict[str, np.ndarray],
          mean_motion: np.ndarray,
          on_sequence: Callable[[Any, np.ndarray], None] | None = None,
          bilabial: tuple[tuple[np.ndarray, np.ndarray], Callable] | None = None) -> dict:
  """Metrics of named predictions and of two baselines over a stream of sequences.

  Args:
    outputs: (sequence, {'preds': {row: [T,V,3]}, 'gt': [T,V,3], 'template': [V,3]});
      the first row is the model's and goes to `on_sequence`.
    regions: the mesh's vertex regions.
    mean_motion: [V,3] the mean training displacement (a baseline).
    bilabial: ((upper, lower) lip bands, sequence -> [T] key visemes): also
      the BILABIAL metric.

  Returns:
    {row: {...}, 'static_template': {...}, 'mean_motion': {...}, 'sequences': n},
    raw (unscaled) values, rows in order.
  """
  acc: dict[str, MetricAccumulator] = {}
  n = 0
  for seq, out in outputs:
    static = np.broadcast_to(out["template"], out["gt"].shape)
    rows = {**out["preds"], "static_template": static, "mean_motion": static + mean_motion}
    lips, keys = bilabial if bilabial is not None else (None, None)
    key_visemes = keys(seq) if keys is not None else None
    for name, pred in rows.items():
      acc.setdefault(name, MetricAccumulator(regions, lips)).add(
          pred, out["gt"], out["template"], key_visemes)
    if on_sequence is not None:
      on_sequence(seq, next(iter(out["preds"].values())))
    n += 1
  result = {name: a.result() for name, a in acc.items()}
  result["sequences"] = n
  return result


def evaluate_rows(decoder: ChunkedDecoder | Mapping[str, ChunkedDecoder],
                  params: dict[str, Any], batcher: Batcher, mesh,
                  mean_motion: np.ndarray,
                  on_sequence: Callable[[Sequence, np.ndarray], None] | None = None,
                  bilabial: bool = False) -> dict:
  """Metrics of several parameter sets (a sweep's members) beside the two baselines.

  Args:
    decoder, params: as in `predict_split` (one compiled decoder serves every
      row of one model).
    bilabial: also the lip-closure error at bilabial key frames (the
      corpus's own: `Corpus.key_visemes` never recognized).

  Returns:
    {row: {...} for each entry, 'static_template': {...}, 'mean_motion': {...},
     'sequences': n}, raw values; `on_sequence` gets the first row's predictions.
  """
  corpus = batcher.corpus
  closure = None
  if bilabial:
    from mmtalker_jax.keymotion.closure import lip_bands
    closure = (lip_bands(corpus.assets.vertices, corpus.assets.regions["lips"]),
               lambda seq: corpus.key_visemes(seq, recognize=False))
  return score(predict_split(decoder, params, batcher, mesh), corpus.assets.regions,
               mean_motion, on_sequence, closure)


def evaluate_long(predictor: Predictor, corpus: Corpus, split: str, seconds: float,
                  mean_motion: np.ndarray,
                  on_sequence: Callable[[long_form.LongSequence, np.ndarray], None] | None = None
                  ) -> dict:
  """Metrics on a split's sentences joined into sequences of `seconds` (`long_form.join`).

  Rows: 'model' (each long sequence predicted in one piece), 'model_per_sentence'
  (the same audio predicted one sentence at a time and joined: the same
  frames, so the two rows compare directly), and the two baselines.
  """
  def outputs():
    for long in long_form.join(corpus, split, seconds):
      style = predictor.styles[corpus.style_index(long.subject)]
      template = corpus.templates[long.subject]
      whole = predictor.animate(long.audio, style, template=template)
      alone, cache = [], {}
      for part in long.parts:
        audio = long.part_audio(part)
        key = (part.sequence.name, len(audio))
        if key not in cache:
          cache[key] = predictor.animate(audio, style, template=template)
        alone.append(cache[key])
      yield long, {"preds": {"model": whole, "model_per_sentence": np.concatenate(alone)},
                   "gt": long.vertices, "template": template}

  return score(outputs(), corpus.assets.regions, mean_motion, on_sequence)
