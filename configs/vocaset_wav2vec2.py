"""VOCASET hearing speech through wav2vec 2.0 base, as FaceFormer and CodeTalker do.

  python train.py --config configs/vocaset_wav2vec2.py --workdir runs/vocaset_w2v2

The encoder is facebook/wav2vec2-base-960h in a local folder (config.json +
model.safetensors; see README, "Pretrained speech encoders"). Its
convolutional feature encoder stays frozen and its transformer fine-tunes
with the rest of the model at the published rate of 1e-4; hidden states 4, 8
and 12 feed the three fusion levels.
"""

import ml_collections

from configs import default, vocaset


def get_config() -> ml_collections.ConfigDict:
  config = vocaset.get_config()
  default.use_pretrained_speech(config, "checkpoints/wav2vec2-base-960h")
  return config
