"""The input pipeline: length buckets, padding with a frame mask, per-host shards.

Every batch is a dict of numpy arrays whose shapes depend only on its bucket,
so a jitted step compiles once per bucket:

  audio       [b, F, C]      float32  the audio input (data/audio.py: log-mel, C =
                                      n_mels, or the waveform, C = 1),
                                      F = num_feature_frames(T), padded with silence
  vertices    [b, T, V, 3]   float32  ground-truth meshes
  template    [b, V, 3]      float32  the subject's neutral face
  frame_mask  [b, T]         float32  1 on real frames, 0 on padding
  style       [b]            int32    speaking-style (training subject) index
  seq_index   [b]            int32    index into the split's sequences, -1 = padding

and, when asked for (`key_inputs`: a key-motion network's, models/key_motion.py):

  key_visemes [b, T]         int32    key viseme at key frames, 0 elsewhere
                                      (Corpus.key_visemes)
  key_motion  [b, T, V, 3]   float32  the true displacement at key frames, 0
                                      elsewhere

b is this host's share of the global batch: host p of P takes rows
[p*B/P, (p+1)*B/P) of every global batch. The order of global batches is a
function of (seed, epoch) alone, identical on every host.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np

from mmtalker_jax import alignment
from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax.data.corpus import Corpus, Sequence


def bucket_for(num_frames: int, buckets: Iterable[int]) -> int:
  """Smallest bucket >= num_frames; beyond the largest, a multiple of it."""
  buckets = sorted(int(b) for b in buckets)
  for b in buckets:
    if num_frames <= b:
      return b
  return -(-num_frames // buckets[-1]) * buckets[-1]


class Batcher:
  """Batches of one split for one host.

  Args:
    corpus: the corpus.
    split: split name.
    global_batch_size: B, summed over hosts; divisible by process_count.
    buckets: bucket lengths in mesh frames.
    train: shuffle per epoch, fill the last batch of a bucket by wrapping
      around, and randomly crop sequences longer than the largest bucket.
      Otherwise: fixed order, whole sequences, padding examples at the end.
    seed: shuffling and cropping seed.
    process_index, process_count: this host and the number of hosts.
    key_inputs: the key-motion entries to add ('key_visemes', 'key_motion').
  """

  def __init__(self, corpus: Corpus, split: str, global_batch_size: int,
               buckets: Iterable[int], *, train: bool, seed: int = 0,
               process_index: int = 0, process_count: int = 1,
               key_inputs: Iterable[str] = ()):
    if global_batch_size % process_count:
      raise ValueError(f"global batch {global_batch_size} does not split over "
                       f"{process_count} hosts")
    self.corpus = corpus
    self.sequences = corpus.split(split)
    if not self.sequences:
      raise ValueError(f"split {split!r} of {corpus.root} has no sequences")
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.buckets = sorted(int(b) for b in buckets)
    self.train = train
    self.seed = seed
    self.process_index = process_index
    self.key_inputs = tuple(key_inputs)
    unknown = set(self.key_inputs) - {"key_visemes", "key_motion"}
    if unknown:
      raise ValueError(f"unknown key inputs {sorted(unknown)}")
    fps = corpus.fps
    self.feature_rate = float(corpus.cfg.features.feature_rate)
    self.crop_stride = alignment.crop_stride(fps, self.feature_rate)
    self._by_bucket: dict[int, list[int]] = {}
    for i, seq in enumerate(self.sequences):
      t = corpus.num_frames(seq)
      b = min(t, self.buckets[-1]) if train else t
      self._by_bucket.setdefault(bucket_for(b, self.buckets), []).append(i)

  def batches_per_epoch(self) -> int:
    return sum(-(-len(v) // self.global_batch_size) for v in self._by_bucket.values())

  def _plan(self, epoch: int) -> list[tuple[int, list[int]]]:
    """[(bucket, global rows)] for one epoch; -1 marks a padding row."""
    rng = np.random.default_rng([self.seed, epoch])
    plan = []
    for bucket in sorted(self._by_bucket):
      idx = list(self._by_bucket[bucket])
      if self.train:
        idx = [idx[i] for i in rng.permutation(len(idx))]
      n = -(-len(idx) // self.global_batch_size) * self.global_batch_size
      if self.train:
        fill = [idx[i % len(idx)] for i in range(len(idx), n)]
      else:
        fill = [-1] * (n - len(idx))
      idx = idx + fill
      plan += [(bucket, idx[i:i + self.global_batch_size])
               for i in range(0, n, self.global_batch_size)]
    if self.train:
      plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan

  def epoch(self, epoch: int = 0, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This host's batches of `epoch`, after skipping the first `skip`."""
    lo = self.process_index * self.local_batch_size
    for k, (bucket, rows) in enumerate(self._plan(epoch)):
      if k < skip:
        continue
      crop_rng = np.random.default_rng([self.seed, epoch, k, 1])
      starts = crop_rng.integers(0, 2**31, size=len(rows))
      local = range(lo, lo + self.local_batch_size)
      yield self._assemble(bucket, [rows[r] for r in local], [int(starts[r]) for r in local])

  def forever(self, start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Training batches over endless epochs, starting at global batch `start_batch`."""
    per_epoch = self.batches_per_epoch()
    epoch, skip = divmod(start_batch, per_epoch)
    while True:
      yield from self.epoch(epoch, skip)
      epoch, skip = epoch + 1, 0

  def pad_to(self, batch: dict[str, np.ndarray], frames: int) -> dict[str, np.ndarray]:
    """`batch` padded at the end to `frames` mesh frames (a larger bucket), as
    `_assemble` pads a short sequence: silence, zero vertices, frame mask 0."""
    t = batch["frame_mask"].shape[1]
    if frames == t:
      return batch
    n_feat = alignment.num_feature_frames(frames, self.corpus.fps, self.feature_rate)
    params = dict(self.corpus.cfg.features)

    def pad(x, length, value=0.0):
      return np.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2),
                    constant_values=value)

    per_frame = {k: pad(batch[k], frames) for k in ("vertices", "frame_mask") + self.key_inputs}
    return dict(batch, audio=pad(batch["audio"], n_feat, audio_lib.padding_value(params)),
                **per_frame)

  def _assemble(self, bucket: int, rows: list[int], starts: list[int]) -> dict[str, np.ndarray]:
    corpus = self.corpus
    fps = corpus.fps
    n_feat = alignment.num_feature_frames(bucket, fps, self.feature_rate)
    v = corpus.assets.num_vertices
    params = dict(corpus.cfg.features)
    b = len(rows)
    batch = {
        "audio": np.full((b, n_feat, audio_lib.num_channels(params)),
                         audio_lib.padding_value(params), np.float32),
        "vertices": np.zeros((b, bucket, v, 3), np.float32),
        "template": np.zeros((b, v, 3), np.float32),
        "frame_mask": np.zeros((b, bucket), np.float32),
        "style": np.zeros((b,), np.int32),
        "seq_index": np.full((b,), -1, np.int32),
    }
    if self.key_inputs:
      batch["key_visemes"] = np.zeros((b, bucket), np.int32)
    if "key_motion" in self.key_inputs:
      batch["key_motion"] = np.zeros((b, bucket, v, 3), np.float32)
    for r, (i, start) in enumerate(zip(rows, starts)):
      if i < 0:
        batch["template"][r] = corpus.assets.vertices
        continue
      seq: Sequence = self.sequences[i]
      verts = corpus.vertices(seq)
      feats = corpus.features(seq)
      t = len(verts)
      f0 = 0
      if t > bucket:  # training crop, at a frame where features align exactly
        n_starts = (t - bucket) // self.crop_stride + 1
        f0 = start % n_starts * self.crop_stride
        j0 = alignment.num_feature_frames(f0, fps, self.feature_rate)
        verts = verts[f0:f0 + bucket]
        feats = feats[j0:j0 + n_feat]
        t = bucket
      if self.key_inputs:
        keys = corpus.key_visemes(seq)[f0:f0 + t]
        batch["key_visemes"][r, :t] = keys
        if "key_motion" in self.key_inputs:
          at = keys > 0
          batch["key_motion"][r, :t][at] = verts[at] - corpus.template(seq)
      batch["vertices"][r, :t] = verts
      batch["audio"][r, :len(feats)] = feats
      batch["template"][r] = corpus.template(seq)
      batch["frame_mask"][r, :t] = 1.0
      batch["style"][r] = corpus.style_index(seq.subject)
      batch["seq_index"][r] = i
    return batch


def zipped(batchers: list[Batcher], start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """Training batches of several batchers (one per seed) taken in step.

  One batcher: its batches as they are. Several: at each step their batches
  padded to the longest of them and stacked on a new leading axis [S, b, ...].
  """
  streams = [b.forever(start_batch) for b in batchers]
  if len(streams) == 1:
    yield from streams[0]
    return
  for batches in zip(*streams):
    frames = max(x["frame_mask"].shape[1] for x in batches)
    padded = [b.pad_to(x, frames) for b, x in zip(batchers, batches)]
    yield {k: np.stack([x[k] for x in padded]) for k in padded[0]}


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Runs `iterator` in a background thread, `size` items ahead.

  An exception in the producer is re-raised in the consumer. Abandoning the
  generator stops the thread at its next item.
  """
  q: queue.Queue = queue.Queue(maxsize=max(1, size))
  stop = threading.Event()
  done = object()

  def produce():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      q.put(done)
    except BaseException as e:  # handed to the consumer
      q.put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while True:
      item = q.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
