"""Any config trained over seeds: a population of one member, for intervals.

  python train.py --config configs/seeds.py:faceformer_synthtalk --workdir runs/ff \
      [--config.sweep.seeds=0,1,2,3]
  python evaluate.py --ckpt runs/ff --ckpt runs/mm --out compare.json

The part after ':' names a config module in configs/ (default: `default`),
with its own argument after a comma (`faceformer_synthtalk,tiny`,
`keymotion,predicted`). The one member is named after the model
(config.model.name: 'mmtalker' or 'faceformer', with '_keys_<mode>' for key
motions), so populations of different models can be evaluated together
and compared seed by seed (evaluate.py with several --ckpt; docs/sweeps.md):
a seed fixes the batches, so the same seed gives every model the same data.
"""

import importlib

import ml_collections


def get_config(base: str = "default") -> ml_collections.ConfigDict:
  name, _, arg = base.partition(",")
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(arg) if arg else module.get_config()
  member = config.model.get("name", "mmtalker")
  if config.model.get("key_motion", "none") != "none":
    member += f"_keys_{config.model.key_motion}"
  config.sweep = ml_collections.ConfigDict()
  config.sweep.members = ml_collections.ConfigDict({member: {}})
  config.sweep.seeds = (0, 1, 2)
  config.sweep.reference = member
  config.sweep.group_size = 0  # one seed per program: memory does not grow with the seeds
  config.sweep.member_devices = 1
  return config
