"""A sweep's metrics against K: `python -m mmtalker_jax.viz.sweep runs/sweep [--results R.json]`.

Three panels (LVE, EVE, |FDD|) against the number of points K, one line per
sampling setting (mode, alpha, temperature, epsilon). By default each
member's best validation entry in its metrics.jsonl (the checkpoint
evaluate.py picks); with --results, the numbers of `evaluate.py --ckpt SWEEP
--out R.json` (any split).
"""

from __future__ import annotations

import argparse
import os
import sys

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError, exit_on_input_error
from mmtalker_jax.training.members import is_sweep_dir, sweep_member_dirs
from mmtalker_jax.viz.curves import read_metrics, save_png

PANELS = (("lve", "LVE", 1e5), ("eve", "EVE", 1e5), ("fdd_abs", "|FDD|", 1e5))
_DEFAULTS = {"alpha": 1.0, "temperature": 1.0, "epsilon": 0.0}


def member_points(workdir: str, results: str | None = None) -> tuple[dict[str, dict], str]:
  """({name: {'settings', metric: value}}, what the numbers are)."""
  if not is_sweep_dir(workdir):
    raise InputError(workdir, "not a sweep's workdir (no members/ folder): pass the "
                     "--workdir of train.py with a sweep config")
  out = {}
  if results:
    data = fileio.read_json(results)
    if "members" not in data:
      raise InputError(results, "not a sweep's results: write it with evaluate.py --ckpt SWEEP --out")
    for name, row in data["members"].items():
      out[name] = dict(row)
    return out, f"{data.get('split', '?')} split"
  for name, folder in sweep_member_dirs(workdir).items():
    settings = fileio.read_json(os.path.join(folder, "config.json"))["sampler"]
    vals = [r for r in read_metrics(os.path.join(folder, "metrics.jsonl")) if "val_lve" in r]
    if not vals:
      raise InputError(os.path.join(folder, "metrics.jsonl"), "holds no validation entry yet")
    best = min(vals, key=lambda r: r["val_lve"])
    out[name] = {"settings": settings, **{k: best[f"val_{k}"] for k, _, _ in PANELS}}
  return out, "validation, each member's best step"


def group_label(settings: dict) -> str:
  """'learned', 'area', plus any setting that differs from its default."""
  extra = [f"{k} {settings[k]:g}" for k, d in _DEFAULTS.items()
           if float(settings.get(k, d)) != d]
  return ", ".join([settings["mode"]] + extra)


def plot(points: dict[str, dict], title: str, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  groups: dict[str, list[tuple[int, dict]]] = {}
  for row in points.values():
    groups.setdefault(group_label(row["settings"]), []).append(
        (int(row["settings"]["num_points"]), row))
  fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 4))
  for ax, (key, name, scale) in zip(axes, PANELS):
    for label, rows in sorted(groups.items()):
      rows.sort(key=lambda r: r[0])
      xs = [k for k, _ in rows]
      ys = [r[key] * scale if r[key] is not None else float("nan") for _, r in rows]
      ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampled points K (per batch row by default)")
    ax.set_title(f"{name} x1e-5 ({title})")
    ax.grid(alpha=0.3)
  axes[0].legend()
  save_png(fig, out)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Plots a sweep's metrics against K.")
  parser.add_argument("workdir")
  parser.add_argument("--results", default=None, help="evaluate.py --out JSON of the sweep")
  parser.add_argument("--out", default=None, help="default: <workdir>/sweep.png")
  args = parser.parse_args(argv)

  def run() -> int:
    out = args.out or os.path.join(args.workdir, "sweep.png")
    points, title = member_points(args.workdir, args.results)
    plot(points, title, out)
    print(f"wrote {out}")
    return 0

  return exit_on_input_error(run)


if __name__ == "__main__":
  sys.exit(main())
