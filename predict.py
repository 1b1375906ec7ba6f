"""Animates speech files with a trained checkpoint.

  python predict.py --ckpt runs/synthtalk --audio speech.wav [--style SUBJECT]
                    [--out anim.npy] [--obj-dir DIR] [--video anim.mp4] [--subdivide N]
  python predict.py --ckpt runs/synthtalk --audio a.wav b.flac ... --out_dir OUT
  python predict.py --ckpt runs/synthtalk --audio_dir DIR --out_dir OUT [--formats npy,mp4,obj]
  python predict.py --ckpt vocaset.pth --config configs/faceformer_vocaset.py \
                    --template FLAME_sample.ply --audio speech.wav [--style SUBJECT]

Each output has duration x fps frames (rounded half up) at the checkpoint's
fps. Several files run in one process (one restore, one compile per length
bucket) and write OUT/<stem>.npy, OUT/<stem>.mp4, OUT/<stem>_obj/; a bad file
is reported and skipped, and the exit code is 2 if any failed. Compiled
programs are kept in --compile_cache, so the next call compiles nothing.
"""

import os
import sys
import time

_START = time.perf_counter()

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py

from absl import flags  # noqa: E402

from mmtalker_jax import compile_cache  # noqa: E402
from mmtalker_jax.cli import run_app  # noqa: E402

_CKPT = flags.DEFINE_string("ckpt", None, "A run's workdir or one step's folder.")
_AUDIO = flags.DEFINE_multi_string("audio", [], "Speech files (any format librosa reads, any "
                                   "rate or channels); more may follow as plain arguments.")
_AUDIO_DIR = flags.DEFINE_string("audio_dir", None, "Animate every audio file in this folder.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Outputs of several files: OUT/<stem>.npy ...")
_FORMATS = flags.DEFINE_list("formats", ["npy"], "With --out_dir: any of npy, mp4, obj.")
_CONFIG = flags.DEFINE_string("config", None, "With a .pth --ckpt (a released FaceFormer): "
                              "its config, configs/faceformer_vocaset.py or faceformer_biwi.py.")
_TEMPLATE = flags.DEFINE_string("template", None, "With a .pth --ckpt: the template mesh "
                                "(OBJ/PLY) to animate.")
_STYLE = flags.DEFINE_string("style", None, "A training subject's style (default: the first).")
_OUT = flags.DEFINE_string("out", "anim.npy", "One file: [T,V,3] float32 vertices.")
_OBJ_DIR = flags.DEFINE_string("obj-dir", None, "One file: one OBJ per frame in this new folder.")
_VIDEO = flags.DEFINE_string("video", None, "One file: a 512x512 MP4 with the speech muxed in.")
_SUBDIVIDE = flags.DEFINE_integer("subdivide", 0, "Subdivide the template N times (1 -> 4x faces).",
                                  lower_bound=0)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print where the time went.")
flags.mark_flags_as_required(["ckpt"])


def run(extra_audio: list[str]):
  from mmtalker_jax.errors import InputError

  cache = compile_cache.enable()
  compiles = compile_cache.CompileLog().start()
  from mmtalker_jax import inference
  from mmtalker_jax.inference import batch

  sources = list(_AUDIO.value) + extra_audio
  if _AUDIO_DIR.value:
    sources += batch.audio_files(_AUDIO_DIR.value)
  if not sources:
    raise InputError("", "nothing to animate: pass --audio FILE [FILE ...] or --audio_dir DIR")
  imported = time.perf_counter()
  single = len(sources) == 1 and not _OUT_DIR.value
  if single:
    outputs = [{f: p for f, p in (("npy", _OUT.value), ("obj", _OBJ_DIR.value),
                                  ("mp4", _VIDEO.value)) if p}]
  else:
    for flag in ("obj-dir", "video", "out"):
      if flags.FLAGS[flag].present:
        raise InputError("", f"--{flag} names one file's output; with several inputs use "
                         "--out_dir and --formats")
    if not _OUT_DIR.value:
      raise InputError("", "several inputs need --out_dir (outputs are named after each input)")
    outputs = batch.output_paths(sources, _OUT_DIR.value, tuple(_FORMATS.value))
  from mmtalker_jax.training import restore
  config = None
  if restore.is_published(_CKPT.value):
    config = restore.published_config(_CKPT.value, _CONFIG.value)
  elif _CONFIG.value or _TEMPLATE.value:
    raise InputError(_CKPT.value, "--config and --template are for a .pth checkpoint; a run "
                     "folder brings its own")
  report = inference.animate_files(_CKPT.value, sources, outputs, _STYLE.value, _SUBDIVIDE.value,
                                   log=(lambda _: None) if single else print,
                                   stop_on_error=single, config=config,
                                   template=_TEMPLATE.value)
  t = report.totals
  if single:
    print(report.one_file(list(outputs[0].values())))
  else:
    wall = time.perf_counter() - _START
    print(f"{t.files} of {len(sources)} files animated ({t.audio_seconds:.1f} s of audio) in "
          f"{wall:.1f} s from start-up: {t.audio_seconds / wall:.1f}x real time"
          + (f"; {t.failed} failed" if t.failed else ""))
  if _VERBOSE.value:
    print(f"time: start-up and imports {imported - _START:.2f} s, {report.timings()}; "
          f"{compiles.summary()}; compilation cache: {cache or 'off'}")
  # Every output is written and closed: skip the interpreter's teardown (about
  # 0.25 s, mostly finalizing XLA's client), which a user waits for otherwise.
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(2 if t.failed else 0)


if __name__ == "__main__":
  run_app(run, rest_args=True)
