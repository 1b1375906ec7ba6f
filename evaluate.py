"""Evaluates a checkpoint: LVE, EVE, FDD, |FDD|, MVE beside two baselines.

  python evaluate.py --ckpt runs/synthtalk [--split test|val|test_b] [--data ROOT]
                     [--out results.json] [--save-pred DIR]
"""

import os

from absl import app, flags, logging

from mmtalker_jax.cli import parse_flags
from mmtalker_jax.errors import InputError, exit_on_input_error

_CKPT = flags.DEFINE_string("ckpt", None, "A run's workdir (best, else latest step) or a step folder.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test", "test_b"], "Split to evaluate.")
_DATA = flags.DEFINE_string("data", None, "Corpus root (default: the one the run trained on).")
_OUT = flags.DEFINE_string("out", None, "Write the numbers as JSON here.")
_SAVE_PRED = flags.DEFINE_string("save_pred", None, "Write {subject}_{sentence}_condition_{style}.npy here.")
flags.mark_flags_as_required(["ckpt"])


def run():
  import numpy as np

  from mmtalker_jax import fileio
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.data.pipeline import Batcher
  from mmtalker_jax.training import evaluation, report, restore

  config = restore.read_run_config(_CKPT.value)
  if _DATA.value:
    config.data.root = _DATA.value
  corpus = Corpus(config.data)
  run_ = restore.restore(_CKPT.value, corpus)
  mean_motion = run_.mean_motion
  if mean_motion is None:
    mean_motion = evaluation.mean_training_motion(corpus)
  batcher = Batcher(corpus, _SPLIT.value, int(config.eval.batch_size),
                    tuple(config.data.bucket_frames), train=False)

  def save_pred(seq, pred):
    style = run_.styles[corpus.style_index(seq.subject)]
    path = os.path.join(_SAVE_PRED.value, f"{seq.subject}_{seq.sentence}_condition_{style}.npy")
    with fileio.atomic_path(path) as tmp:
      np.save(tmp, pred.reshape(len(pred), -1))

  result = evaluation.evaluate(evaluation.make_predict_fn(run_.model), run_.params, batcher,
                               run_.mesh, mean_motion, save_pred if _SAVE_PRED.value else None)
  scale = report.scales(config.scale)
  print(f"{_SPLIT.value} split of {corpus.root}: {result['sequences']} sequences, "
        f"checkpoint step {run_.step} of {run_.workdir}")
  print(report.table(result, scale))
  if _OUT.value:
    report.write_json(_OUT.value, result, scale, _SPLIT.value, run_.step)
    print(f"wrote {_OUT.value}")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  exit_on_input_error(run)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
