"""Corpus reading, buckets and masks, per-host shards, deterministic order."""

import numpy as np
import pytest

from mmtalker_jax import alignment
from mmtalker_jax.data.corpus import Corpus, parse_stem
from mmtalker_jax.data.pipeline import Batcher, bucket_for, prefetch


def test_parse_stem_splits_off_the_last_part():
  assert parse_stem("FaceTalk_170728_03272_TA_sentence01") == ("FaceTalk_170728_03272_TA", "sentence01")
  assert parse_stem("F2_e37") == ("F2", "e37")
  with pytest.raises(ValueError):
    parse_stem("nounderscore")


def test_bucket_for():
  assert bucket_for(10, (32, 64)) == 32
  assert bucket_for(32, (32, 64)) == 32
  assert bucket_for(33, (64, 32)) == 64
  assert bucket_for(65, (32, 64)) == 128


def test_splits_select_subjects_and_sentences(data_cfg):
  corpus = Corpus(data_cfg)
  train = corpus.split("train")
  assert {s.subject for s in train} == set(data_cfg.splits.train.subjects)
  lo, hi = data_cfg.splits.train.sentences
  assert all(lo <= s.number <= hi for s in train)
  names = [set(s.name for s in corpus.split(k)) for k in ("train", "val", "test", "test_b")]
  for i in range(4):
    for j in range(i + 1, 4):
      assert not names[i] & names[j]
  unseen = corpus.split("test_b")[0].subject
  assert unseen not in corpus.train_subjects
  assert corpus.style_index(unseen) == corpus.train_subjects.index(data_cfg.unseen_style)


def test_eval_batches_cover_each_sequence_once_with_masks(data_cfg):
  data_cfg.bucket_frames = (32, 60, 64)  # tiny training sentences have 59-60 frames
  corpus = Corpus(data_cfg)
  batcher = Batcher(corpus, "train", 3, data_cfg.bucket_frames, train=False)
  seen = []
  for batch in batcher.epoch(0):
    bucket = batch["vertices"].shape[1]
    # The smallest bucket that holds the batch's longest sequence.
    longest = int(batch["frame_mask"].sum(axis=1).max())
    assert bucket == min(b for b in data_cfg.bucket_frames if b >= longest)
    assert batch["audio"].shape == (3, alignment.num_feature_frames(bucket, 30.0, 100.0), 80)
    for r, i in enumerate(batch["seq_index"]):
      if i < 0:
        assert batch["frame_mask"][r].sum() == 0
        continue
      seq = batcher.sequences[i]
      t = corpus.num_frames(seq)
      assert batch["frame_mask"][r].sum() == t and batch["frame_mask"][r, :t].all()
      np.testing.assert_array_equal(batch["vertices"][r, :t], corpus.vertices(seq))
      assert not batch["vertices"][r, t:].any()
      np.testing.assert_array_equal(batch["template"][r], corpus.template(seq))
      assert batch["style"][r] == corpus.style_index(seq.subject)
      seen.append(int(i))
  assert sorted(seen) == list(range(len(batcher.sequences)))


def test_hosts_read_disjoint_shards_of_the_same_global_batch(data_cfg):
  corpus = Corpus(data_cfg)
  whole = Batcher(corpus, "train", 4, data_cfg.bucket_frames, train=True, seed=3)
  hosts = [Batcher(corpus, "train", 4, data_cfg.bucket_frames, train=True, seed=3,
                   process_index=p, process_count=2) for p in range(2)]
  for g, a, b in zip(whole.epoch(1), hosts[0].epoch(1), hosts[1].epoch(1)):
    assert a["seq_index"].shape == (2,)
    np.testing.assert_array_equal(np.concatenate([a["seq_index"], b["seq_index"]]), g["seq_index"])
    np.testing.assert_array_equal(np.concatenate([a["vertices"], b["vertices"]]), g["vertices"])


def test_shuffle_is_a_function_of_seed_and_epoch(data_cfg):
  corpus = Corpus(data_cfg)
  order = lambda seed, epoch: [tuple(b["seq_index"]) for b in Batcher(
      corpus, "train", 2, data_cfg.bucket_frames, train=True, seed=seed).epoch(epoch)]
  assert order(0, 0) == order(0, 0)
  assert order(0, 0) != order(0, 1)
  assert order(0, 0) != order(1, 0)
  # Every training sequence appears in each epoch.
  n = len(corpus.split("train"))
  assert set(i for b in order(0, 2) for i in b) == set(range(n))


def test_resume_skips_to_the_same_batch(data_cfg):
  corpus = Corpus(data_cfg)
  batcher = Batcher(corpus, "train", 2, data_cfg.bucket_frames, train=True, seed=5)
  stream = batcher.forever()
  ref = [next(stream)["seq_index"].tolist() for _ in range(2 * batcher.batches_per_epoch() + 1)]
  later = batcher.forever(start_batch=len(ref) - 3)
  assert [next(later)["seq_index"].tolist() for _ in range(3)] == ref[-3:]


def test_training_crops_long_sequences_keeping_audio_aligned(data_cfg):
  data_cfg.bucket_frames = (24,)  # shorter than every tiny sequence
  corpus = Corpus(data_cfg)
  batcher = Batcher(corpus, "train", 2, data_cfg.bucket_frames, train=True, seed=0)
  batch = next(batcher.epoch(0))
  assert batch["vertices"].shape[1] == 24 and batch["frame_mask"].all()
  for r, i in enumerate(batch["seq_index"]):
    seq = batcher.sequences[i]
    full_v, full_a = corpus.vertices(seq), corpus.features(seq)
    start = next(s for s in range(len(full_v) - 23)
                 if np.array_equal(full_v[s:s + 24], batch["vertices"][r]))
    assert start % alignment.crop_stride(30.0, 100.0) == 0
    j0 = alignment.num_feature_frames(start, 30.0, 100.0)
    np.testing.assert_array_equal(batch["audio"][r], full_a[j0:j0 + batch["audio"].shape[1]])


def test_prefetch_yields_in_order_and_reraises():
  assert list(prefetch(iter(range(10)), 3)) == list(range(10))

  def broken():
    yield 1
    raise RuntimeError("boom")

  it = prefetch(broken())
  assert next(it) == 1
  with pytest.raises(RuntimeError, match="boom"):
    next(it)
