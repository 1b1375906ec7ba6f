"""FaceFormer on BIWI, as published (width 128, period 25, two wav2vec 2.0 states per frame).

  python evaluate.py --ckpt biwi.pth --config configs/faceformer_biwi.py
See configs/faceformer_vocaset.py for training.
"""

import ml_collections

from configs import biwi
from configs.faceformer_vocaset import use_published_faceformer


def get_config() -> ml_collections.ConfigDict:
  config = biwi.get_config()
  use_published_faceformer(config, width=128, period=25, alignment="pairs")
  return config
