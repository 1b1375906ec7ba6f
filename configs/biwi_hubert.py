"""BIWI hearing speech through HuBERT base, as HuBERT-based speech-to-face models do.

  python train.py --config configs/biwi_hubert.py --workdir runs/biwi_hubert

The encoder is facebook/hubert-base-ls960 in a local folder (config.json +
model.safetensors; see README, "Pretrained speech encoders"). Its
convolutional feature encoder stays frozen and its transformer fine-tunes at
1e-4; hidden states 4, 8 and 12 feed the three fusion levels.
"""

import ml_collections

from configs import biwi, default


def get_config() -> ml_collections.ConfigDict:
  config = biwi.get_config()
  default.use_pretrained_speech(config, "checkpoints/hubert-base-ls960")
  return config
