"""FaceFormer on SynthTalk, beside MMTalker's configs/default.py (same corpus, steps, batch).

`python train.py --config configs/faceformer_synthtalk.py --workdir runs/faceformer`

The published model hears wav2vec 2.0 (configs/faceformer_vocaset.py); on a
2-core CPU it takes MMTalker's log-mel conv front end instead, at MMTalker's
width, so the two differ in what comes after the audio: FaceFormer's
autoregressive decoder against MMTalker's geometry, sampler and fusion.
`:tiny` gives the test-sized corpus (configs/tiny.py).
"""

import ml_collections

from configs import default, tiny


def faceformer_model(width: int, period: int) -> ml_collections.ConfigDict:
  """The published FaceFormer decoder (models/faceformer.py) at `width` and `period`."""
  return ml_collections.ConfigDict(dict(
      name="faceformer", width=width, num_heads=4, period=period, dropout=0.1,
      # False: train on the model's own outputs, frame by frame, as the
      # published training does (a scan over frames); True: feed the true
      # previous frame (all frames at once, faster).
      teacher_forcing=False,
      # 'logmel' (audio_levels conv blocks of kernel conv_kernel) or
      # 'pretrained' (data.speech_checkpoint), aligned to the frames by
      # audio_alignment: 'interpolate' (one state per frame) or 'pairs' (two).
      audio_encoder="logmel", audio_alignment="interpolate", audio_levels=3, conv_kernel=5,
      speech_layers=(), freeze_feature_encoder=True, freeze_speech_transformer=False,
      speech_architecture=ml_collections.ConfigDict(),
      # Key motions, as in configs/default.py (none in the published model).
      key_motion="none", key_rank=16, key_fade_seconds=0.2, key_gap_seconds=0.5))


def use_faceformer(config: ml_collections.ConfigDict, width: int, period: int) -> None:
  """Swaps MMTalker for FaceFormer in `config` (in place): its model, its loss
  (the mean squared error at every vertex, nothing else) and no sampling."""
  config.model = faceformer_model(width, period)
  config.sampler.num_points = 0
  config.loss.update(dict(point_weight=1.0, velocity_weight=0.0, vertex_every=0))
  config.train.host_memory_gib = 0.0  # no cap: the default's was sized for MMTalker's steps


def get_config(size: str = "default") -> ml_collections.ConfigDict:
  bases = {"default": default, "tiny": tiny}
  if size not in bases:
    raise ValueError(f"faceformer_synthtalk size must be one of {sorted(bases)}, not {size!r}")
  config = bases[size].get_config()
  use_faceformer(config, width=int(config.model.width), period=int(config.data.fps))
  return config
