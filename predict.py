"""Animates any speech file with a trained checkpoint.

  python predict.py --ckpt runs/synthtalk --audio speech.wav [--style SUBJECT]
                    [--out anim.npy] [--obj-dir DIR] [--video anim.mp4] [--subdivide N]

The output has duration x fps frames (rounded half up) at the checkpoint's fps.
"""

from mmtalker_jax.allocator import reexec_with_tcmalloc

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py

from absl import flags  # noqa: E402

from mmtalker_jax.cli import run_app  # noqa: E402

_CKPT = flags.DEFINE_string("ckpt", None, "A run's workdir or one step's folder.")
_AUDIO = flags.DEFINE_string("audio", None, "Speech: any file librosa reads, any rate or channels.")
_STYLE = flags.DEFINE_string("style", None, "A training subject's style (default: the first).")
_OUT = flags.DEFINE_string("out", "anim.npy", "[T,V,3] float32 vertices.")
_OBJ_DIR = flags.DEFINE_string("obj-dir", None, "Write one OBJ per frame into this new folder.")
_VIDEO = flags.DEFINE_string("video", None, "Write a 512x512 MP4 with the speech muxed in.")
_SUBDIVIDE = flags.DEFINE_integer("subdivide", 0, "Subdivide the template N times (1 -> 4x faces).",
                                  lower_bound=0)
flags.mark_flags_as_required(["ckpt", "audio"])


def run():
  from mmtalker_jax.inference import animate_file

  summary = animate_file(_CKPT.value, _AUDIO.value, style=_STYLE.value, out=_OUT.value,
                         obj_dir=_OBJ_DIR.value, video=_VIDEO.value, subdivide=_SUBDIVIDE.value)
  print(summary)


if __name__ == "__main__":
  run_app(run)
