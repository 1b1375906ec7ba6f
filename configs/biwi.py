"""BIWI in the FaceFormer layout (see README: preparing BIWI)."""

import ml_collections

from configs import default

_TEST_A = ["F2", "F3", "F4", "M3", "M4", "M5"]
_TEST_B = ["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"]


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  data = config.data
  data.root = "data/BIWI"
  data.synthetic.enabled = False
  data.fps = 25.0
  data.frame_stride = 1
  data.templates = "templates.pkl"
  data.template_mesh = "BIWI.ply"
  data.num_vertices = 23370
  # BIWI ships no eye region; EVE is reported where a region 'eye' exists.
  data.regions = ml_collections.ConfigDict(dict(
      lips=["regions/lve.txt"], upper_face=["regions/fdd.txt"]))
  data.splits = ml_collections.ConfigDict(dict(
      train=dict(subjects=_TEST_A, sentences=(1, 32)),
      val=dict(subjects=_TEST_A, sentences=(33, 36)),
      test=dict(subjects=_TEST_A, sentences=(37, 40)),
      test_b=dict(subjects=_TEST_B, sentences=(37, 40))))
  data.unseen_style = _TEST_A[0]
  data.bucket_frames = (128, 192, 256)
  config.scale = ml_collections.ConfigDict(dict(lve=1e4, eve=1e4, fdd=1e5, mve=1e3))
  default.size_for_accelerators(config)
  return config
