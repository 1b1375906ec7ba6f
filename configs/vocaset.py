"""VOCASET in the FaceFormer layout (see README: preparing VOCASET)."""

import ml_collections

from configs import default

_TRAIN = ["FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA",
          "FaceTalk_170725_00137_TA", "FaceTalk_170915_00223_TA",
          "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
          "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"]
_VAL = ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"]
_TEST = ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  data = config.data
  data.root = "data/vocaset"
  data.synthetic.enabled = False
  data.fps = 30.0  # captured at 60 fps, read every other frame
  data.frame_stride = 2
  data.templates = "templates.pkl"
  # FLAME's head template with UVs (the 2020 release's head_template.obj).
  data.template_mesh = "head_template.obj"
  data.num_vertices = 5023
  data.num_faces = 9976
  data.regions = ml_collections.ConfigDict(dict(
      lips=["FLAME_masks.pkl:lips"], eye=["FLAME_masks.pkl:eye_region"],
      upper_face=["FLAME_masks.pkl:forehead", "FLAME_masks.pkl:eye_region"]))
  data.splits = ml_collections.ConfigDict(dict(
      train=dict(subjects=_TRAIN, sentences=(1, 40)),
      val=dict(subjects=_VAL, sentences=(21, 40)),
      test=dict(subjects=_TEST, sentences=(21, 40)),
      test_b=dict(subjects=_TEST, sentences=(1, 20))))
  data.unseen_style = _TRAIN[0]
  data.bucket_frames = (128, 192, 256, 320)
  config.scale = ml_collections.ConfigDict(dict(lve=1e5, eve=1e5, fdd=1e5, mve=1e3))
  default.size_for_accelerators(config)
  return config
