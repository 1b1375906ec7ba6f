"""BIWI hearing speech through HuBERT base, as HuBERT-based speech-to-face models do.

  python train.py --config configs/biwi_hubert.py --workdir runs/biwi_hubert

The encoder is facebook/hubert-base-ls960 in a local folder (config.json +
model.safetensors; see README, "Pretrained speech encoders"). Its
convolutional feature encoder stays frozen and its transformer fine-tunes at
1e-4; hidden states 4, 8 and 12 feed the three fusion levels.
"""

import ml_collections

from configs import biwi


def get_config() -> ml_collections.ConfigDict:
  config = biwi.get_config()
  config.data.speech_checkpoint = "checkpoints/hubert-base-ls960"
  config.model.update(dict(audio_encoder="pretrained", audio_levels=3, speech_layers=(4, 8, 12),
                           freeze_feature_encoder=True, freeze_speech_transformer=False))
  config.train.learning_rate = 1e-4
  return config
