"""Multiface in the FaceDiffuser layout (see docs/data.md: preparing Multiface)."""

import ml_collections

from configs import default

# The 13 identities, numbered as the common preprocessing names them.
_SUBJECTS = [f"{i:02d}" for i in range(1, 14)]


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  data = config.data
  data.root = "data/multiface"
  data.synthetic.enabled = False
  data.fps = 30.0
  data.frame_stride = 1
  data.templates = "templates.pkl"
  data.template_mesh = "face_template.obj"
  data.num_vertices = 6172
  # Multiface ships per-vertex weights: lips where the mouth weight exceeds
  # 0.1, the upper face where the forehead weight exceeds 0.4. No eye region.
  data.regions = ml_collections.ConfigDict(dict(
      lips=["weighted_mouth_mask.txt>0.1"], upper_face=["forehead_mask.txt>0.4"]))
  data.splits = ml_collections.ConfigDict(dict(
      train=dict(subjects=_SUBJECTS, sentences=(1, 40)),
      val=dict(subjects=_SUBJECTS, sentences=(41, 45)),
      test=dict(subjects=_SUBJECTS, sentences=(46, 50)),
      test_b=dict(subjects=_SUBJECTS, sentences=(46, 50))))
  data.unseen_style = _SUBJECTS[0]
  data.bucket_frames = (96, 128, 160, 192)
  config.scale = ml_collections.ConfigDict(dict(lve=1e5, eve=1e5, fdd=1e5, mve=1e3))
  default.size_for_accelerators(config)
  return config
