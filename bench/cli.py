"""predict.py as a user runs it, from a fresh shell each time, at V = 5023.

  python bench/cli.py [--ckpt WORKDIR] [--seconds 10] [--files 20]

Without --ckpt, a stand-in run (the default config, freshly initialised, on a
5023-vertex disk mesh; speed does not depend on the weights) is written to a
temporary folder. Every figure is the wall time of a whole `python predict.py`
process, start-up included, against a compilation cache that starts empty:

  first call     a 10 s file, nothing cached yet
  second call    another 10 s file of a different length (same bucket or not)
  import         `python -X importtime` of the prediction path
  --audio_dir    `--files` files of about 10 s each, end to end: real-time factor
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_stand_in_run(workdir: str, num_vertices: int) -> None:
  """A complete run folder (checkpoint, config, mesh) holding random weights."""
  import jax

  from bench.model import disk_face
  from configs import default
  from mmtalker_jax.mesh.assets import build_mesh_assets
  from mmtalker_jax.models.registry import build_model
  from mmtalker_jax.training import checkpoint, run_folder, sharding
  from mmtalker_jax.training.optimizer import make_optimizer
  from mmtalker_jax.training.state import create_state

  config = default.get_config()
  assets = build_mesh_assets(*disk_face(num_vertices))
  styles = [f"S{i}" for i in range(8)]
  model = build_model(config, assets, num_styles=len(styles))
  state = create_state(model, make_optimizer(config.train), config.data, jax.random.key(0),
                       sharding.make_mesh())
  meta = {"num_vertices": assets.num_vertices, "num_faces": assets.num_faces,
          "topology": assets.fingerprint, "styles": styles}
  mngr = checkpoint.manager(workdir, keep=1)
  checkpoint.save(mngr, 0, state, config, meta)
  mngr.wait_until_finished()
  mngr.close()
  run_folder.save_mesh(workdir, assets, {s: assets.vertices for s in styles})


def write_speech(path: str, seconds: float, seed: int) -> None:
  import numpy as np
  import soundfile as sf

  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * 16000)) / 16000
  voice = np.sin(2 * np.pi * (120 + 40 * rng.random()) * t) * (1 + np.sin(2 * np.pi * 4 * t))
  sf.write(path, (0.2 * voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  return wall, proc.stdout


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--ckpt", default=None)
  parser.add_argument("--vertices", type=int, default=5023)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--files", type=int, default=20)
  args = parser.parse_args()

  tmp = tempfile.mkdtemp(prefix="mmtalker_cli_bench_")
  ckpt = args.ckpt or os.path.join(tmp, "run")
  if not args.ckpt:
    write_stand_in_run(ckpt, args.vertices)
  env = dict(os.environ, MMTALKER_COMPILE_CACHE=os.path.join(tmp, "xla"))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  predict = [sys.executable, "predict.py", "--ckpt", ckpt, "--verbose"]

  first_wav, second_wav = os.path.join(tmp, "first.wav"), os.path.join(tmp, "second.wav")
  write_speech(first_wav, args.seconds, 0)
  write_speech(second_wav, args.seconds * 0.97, 1)
  first, out1 = timed(predict + ["--audio", first_wav, "--out", os.path.join(tmp, "1.npy")], env)
  second, out2 = timed(predict + ["--audio", second_wav, "--out", os.path.join(tmp, "2.npy")], env)
  compile_of = lambda out: float(re.search(r"compile ([\d.]+) s", out).group(1))  # noqa: E731
  print(f"first predict.py call  ({args.seconds:.0f} s file, empty cache): {first:5.2f} s wall "
        f"(compile {compile_of(out1):.2f} s)")
  print(f"second predict.py call ({args.seconds * 0.97:.1f} s file):             {second:5.2f} s "
        f"wall (compile {compile_of(out2):.2f} s) = {second / first:.2f}x the first")
  print("  second call: " + out2.strip().splitlines()[-1].removeprefix("time: "))

  imports = subprocess.run(
      [sys.executable, "-X", "importtime", "-c",
       "import mmtalker_jax.inference, mmtalker_jax.training.restore"],
      cwd=ROOT, env=env, capture_output=True, text=True).stderr
  total_us = sum(int(line.split("|")[0].split(":")[1]) for line in imports.splitlines()
                 if line.startswith("import time:") and line.split("|")[0].split(":")[1].strip()
                 .isdigit())
  print(f"import of the prediction path (python -X importtime, self times summed): "
        f"{total_us / 1e6:.2f} s")

  folder = os.path.join(tmp, "clips")
  os.makedirs(folder)
  for i in range(args.files):
    write_speech(os.path.join(folder, f"clip{i:03d}.wav"), args.seconds * (0.95 + 0.1 * i / max(
        args.files - 1, 1)), 100 + i)
  wall, out = timed(predict + ["--audio_dir", folder, "--out_dir", os.path.join(tmp, "out")],
                    env)
  audio_seconds = float(re.search(r"\(([\d.]+) s of audio\)", out).group(1))
  print(f"--audio_dir over {args.files} files ({audio_seconds:.0f} s of audio): {wall:.2f} s "
        f"wall end to end = {audio_seconds / wall:.1f}x real time")
  print("  " + out.strip().splitlines()[-1].removeprefix("time: "))


if __name__ == "__main__":
  main()
