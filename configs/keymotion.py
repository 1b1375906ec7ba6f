"""Key motions (KMTalk) on SynthTalk: a base config with `model.key_motion` set.

  python train.py --config configs/keymotion.py:predicted --workdir runs/keys
  python train.py --config configs/seeds.py:keymotion,oracle --workdir runs/keys_oracle
  python predict.py --ckpt runs/keys --audio speech.wav --verbose

The argument is MODE[@BASE]: MODE 'none', 'oracle' or 'predicted'
(models/key_motion.py); BASE a config module of configs/ (default: `default`;
`tiny`, `faceformer_synthtalk`, or a base with its own argument after a second
'@': `faceformer_synthtalk@tiny`). See docs/keymotion.md.
"""

import importlib

import ml_collections


def get_config(arg: str = "predicted") -> ml_collections.ConfigDict:
  mode, _, base = arg.partition("@")
  name, _, base_arg = (base or "default").partition("@")
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(base_arg) if base_arg else module.get_config()
  config.model.key_motion = mode  # checked when the model is built
  if mode != "none":
    config.train.host_memory_gib = 0.0  # no cap: the base's was sized without key inputs
  return config
