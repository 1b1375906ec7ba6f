"""A sweep's metrics against K: `python -m mmtalker_jax.viz.sweep runs/sweep [--results R.json]`.

Three panels (LVE, EVE, |FDD|) against the number of points K, one line per
sampling setting (mode, alpha, temperature, epsilon); each point is a
member's mean over seeds with its 95% interval as an error bar (none with one
seed; see training/intervals.py), and each seed's own value is a small open
marker beside it, so a spread the interval summarises stays visible (with
three seeds, two modes look like one wide bar). By default each run's best
validation entry in its metrics.jsonl (the checkpoint evaluate.py picks);
with --results, the numbers of `evaluate.py --ckpt SWEEP --out R.json` (any
split).
"""

from __future__ import annotations

import argparse
import os
import sys

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError, exit_on_input_error
from mmtalker_jax.training import intervals, population
from mmtalker_jax.viz.curves import read_metrics, save_png

PANELS = (("lve", "LVE", 1e5), ("eve", "EVE", 1e5), ("fdd_abs", "|FDD|", 1e5))
_DEFAULTS = {"alpha": 1.0, "temperature": 1.0, "epsilon": 0.0}


def member_points(workdir: str, results: str | None = None) -> tuple[dict[str, dict], str]:
  """({name: {'settings', 'seeds': {seed: {metric: value}}, 'mean': {metric: value},
  'ci95': {metric: [lo, hi] or None}}}, what the numbers are)."""
  if not population.is_population_dir(workdir):
    raise InputError(workdir, "not a sweep's workdir (no members/ folder): pass the "
                     "--workdir of train.py with a sweep config")
  if results:
    data = fileio.read_json(results)
    rows = data.get("members")
    if not isinstance(rows, dict) or not all(_is_member_row(r) for r in rows.values()):
      raise InputError(results, "not a sweep's results: write it with evaluate.py --ckpt SWEEP --out")
    return ({name: dict(row) for name, row in rows.items()},
          f"{data.get('split', '?')} split; mean, 95% interval over seeds")
  out = {}
  for name, seeds in population.replica_dirs(workdir).items():
    best = {}
    for seed, folder in seeds.items():
      vals = [r for r in read_metrics(os.path.join(folder, "metrics.jsonl")) if "val_lve" in r]
      if not vals:
        raise InputError(os.path.join(folder, "metrics.jsonl"), "holds no validation entry yet")
      best[str(seed)] = min(vals, key=lambda r: r["val_lve"])
    settings = fileio.read_json(os.path.join(next(iter(seeds.values())), "config.json"))["sampler"]
    per_seed = {s: {k: b[f"val_{k}"] for k, _, _ in PANELS} for s, b in best.items()}
    row = {"settings": settings, "seeds": per_seed, "mean": {}, "ci95": {}}
    for k, _, _ in PANELS:
      row["mean"][k], row["ci95"][k] = intervals.interval([v[k] for v in per_seed.values()])
    out[name] = row
  return out, "val, best step; mean, 95% interval over seeds"


def _is_member_row(row) -> bool:
  """A member row of evaluate.py's JSON: 'mean', 'settings' with mode and K, seeds keyed by integer."""
  return (isinstance(row, dict) and isinstance(row.get("mean"), dict)
          and isinstance(row.get("settings"), dict)
          and {"mode", "num_points"} <= set(row["settings"])
          and all(str(s).isdigit() and isinstance(v, dict)
                  for s, v in (row.get("seeds") or {}).items()))


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
    for g, (label, rows) in enumerate(sorted(groups.items())):
      rows.sort(key=lambda r: r[0])
      # Settings that share a K are set a little apart, so no bar hides another.
      xs = [k * 1.04 ** (g - (len(groups) - 1) / 2) for k, _ in rows]
      ys = [_value(r["mean"].get(key)) * scale for _, r in rows]
      cis = [r.get("ci95", {}).get(key) for _, r in rows]
      below = [y - ci[0] * scale if ci else 0.0 for y, ci in zip(ys, cis)]
      above = [ci[1] * scale - y if ci else 0.0 for y, ci in zip(ys, cis)]
      line = ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=4, label=label)
      for x, (_, r) in zip(xs, rows):
        per_seed = seed_values(r, key)
        ax.plot([x * 1.015] * len(per_seed), [v * scale for v in per_seed], linestyle="none",
                marker="o", markersize=4, markerfacecolor="none",
                color=line.lines[0].get_color())
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampled points K (per batch row by default)")
    ax.set_title(f"{name} x1e-5", fontsize=10)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(f"{title}; open markers: each seed", fontsize=10)
  save_png(fig, out)


def seed_values(row: dict, key: str) -> list[float]:
  """A member row's per-seed values of one metric, in seed order ([] without 'seeds')."""
  seeds = row.get("seeds") or {}
  return [float(seeds[s][key]) for s in sorted(seeds, key=int) if seeds[s].get(key) is not None]


def _value(v) -> float:
  return float("nan") if v is None else float(v)


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
