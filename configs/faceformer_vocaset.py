"""FaceFormer on VOCASET, as published (width 64, period 30, wav2vec 2.0 interpolated to 30 fps).

Train (needs a local wav2vec2-base-960h folder: docs/speech.md):
  python train.py --config configs/faceformer_vocaset.py --workdir runs/ff_voca \
      --config.data.speech_checkpoint=checkpoints/wav2vec2-base-960h
Score the released model with our metrics (docs/faceformer.md):
  python evaluate.py --ckpt vocaset.pth --config configs/faceformer_vocaset.py

The training subjects are the published list in the published order: the
released model's style vector is a one-hot over them.
"""

import ml_collections

from configs import faceformer_synthtalk, vocaset
from mmtalker_jax.models.speech import setup
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig


def use_published_faceformer(config: ml_collections.ConfigDict, width: int, period: int,
                             alignment: str) -> None:
  """FaceFormer as released (in place): wav2vec2-base-960h (its conv features
  frozen, its transformer fine-tuned), the mean squared error at every vertex,
  batch size 1 and learning rate 1e-4 as the official main.py trains."""
  faceformer_synthtalk.use_faceformer(config, width, period)
  config.model.update(dict(audio_encoder="pretrained", audio_alignment=alignment,
                           audio_levels=1))
  # wav2vec2-base's architecture, so a released .pth loads without the folder;
  # training reads the folder's own config.json over it (speech/setup.py).
  setup.apply_architecture(config, SpeechConfig(), {"sampling_rate": 16000,
                                                     "do_normalize": True})
  config.model.speech_layers = (SpeechConfig().num_hidden_layers,)
  config.train.update(dict(global_batch_size=1, learning_rate=1e-4))
  config.eval.batch_size = 1


def get_config() -> ml_collections.ConfigDict:
  config = vocaset.get_config()
  use_published_faceformer(config, width=64, period=30, alignment="interpolate")
  return config
