"""Training curves: `python -m mmtalker_jax.viz.curves --workdir runs/synthtalk --out curves.png`.

Left: the training losses (log scale). Right: the validation metrics, each
relative to its first value, so LVE, EVE, |FDD| and MVE share one axis.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError, exit_on_input_error

LOSSES = ("loss", "point_mse", "velocity", "vertex_mse")
VALIDATION = ("val_lve", "val_eve", "val_fdd_abs", "val_mve")


def read_metrics(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise InputError(path, "not found: pass the --workdir of a training run")
  rows = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except ValueError:
          raise InputError(path, f"line {n} is not JSON") from None
  if not rows:
    raise InputError(path, "holds no metrics yet")
  return rows


def plot(rows: list[dict], out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
  for key in LOSSES:
    pts = [(r["step"], r[key]) for r in rows if key in r]
    if pts:
      ax_loss.plot(*zip(*pts), label=key)
  ax_loss.set_yscale("log")
  ax_loss.set_xlabel("step")
  ax_loss.set_title("training loss (output units squared)")
  ax_loss.legend()
  for key in VALIDATION:
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] == r[key]]
    if pts and pts[0][1] > 0:
      ax_val.plot([s for s, _ in pts], [v / pts[0][1] for _, v in pts], marker="o",
                  label=f"{key[4:]} (first {pts[0][1]:.3g})")
  ax_val.set_yscale("log")
  ax_val.set_xlabel("step")
  ax_val.set_title("validation, relative to the first evaluation")
  ax_val.legend()
  for ax in (ax_loss, ax_val):
    ax.grid(alpha=0.3)
  save_png(fig, out)


def save_png(fig, out: str) -> None:
  """Lays out `fig`, writes it to `out` atomically as a PNG, and closes it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  with fileio.atomic_path(out) as tmp:
    fig.savefig(tmp, dpi=100, format="png")
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Plots a run's metrics.jsonl.")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", default=None, help="default: <workdir>/curves.png")
  args = parser.parse_args(argv)

  def run() -> int:
    out = args.out or os.path.join(args.workdir, "curves.png")
    plot(read_metrics(os.path.join(args.workdir, "metrics.jsonl")), out)
    print(f"wrote {out}")
    return 0

  return exit_on_input_error(run)


if __name__ == "__main__":
  sys.exit(main())
