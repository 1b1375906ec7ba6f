"""python -m mmtalker_jax.data.synthetic --out DIR [--seed N] [--config configs/tiny.py]"""

import argparse
import time

from mmtalker_jax.configlib import load_config
from mmtalker_jax.data.synthetic.corpus import SynthSpec, generate, spec_from_config
from mmtalker_jax.errors import exit_on_input_error


def main() -> None:
  parser = argparse.ArgumentParser(description="Writes the SynthTalk corpus.")
  parser.add_argument("--out", required=True, help="corpus folder to write")
  parser.add_argument("--seed", type=int, default=None, help="default: the config's (0)")
  parser.add_argument("--config", default=None,
                      help="take the corpus size from this config's data.synthetic")
  args = parser.parse_args()

  def run():
    spec = spec_from_config(load_config(args.config).data) if args.config else SynthSpec()
    if args.seed is not None:
      spec = SynthSpec(**{**spec.__dict__, "seed": args.seed})
    start = time.perf_counter()
    manifest = generate(args.out, spec)
    elapsed = time.perf_counter() - start
    n = len(manifest["subjects"]["train"]) + len(manifest["subjects"]["unseen"])
    print(f"SynthTalk: {n} subjects x {spec.num_sentences} sentences, "
          f"{manifest['num_vertices']} vertices, written to {args.out} in {elapsed:.1f} s")
    print(f"a picture of it: python -m mmtalker_jax.viz.preview {args.out}")

  exit_on_input_error(run)


if __name__ == "__main__":
  main()
