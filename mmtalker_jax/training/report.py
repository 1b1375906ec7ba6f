"""The evaluation table and its JSON."""

from __future__ import annotations

import json
import math

from mmtalker_jax import fileio
from mmtalker_jax.training import intervals
from mmtalker_jax.training.evaluation import BILABIAL, METRICS, metrics_of

_SCALE_OF = {"lve": "lve", "eve": "eve", "fdd": "fdd", "fdd_abs": "fdd", "mve": "mve",
             BILABIAL: BILABIAL}
_TITLE = {"lve": "LVE", "eve": "EVE", "fdd": "FDD", "fdd_abs": "|FDD|", "mve": "MVE",
          BILABIAL: "BILAB"}
_DEFAULT_SCALE = {BILABIAL: 1e3}  # millimetres for metre-unit corpora


def scales(scale_cfg) -> dict[str, float]:
  return {k: float(scale_cfg.get(_SCALE_OF[k], _DEFAULT_SCALE.get(k, 1.0)))
          for k in METRICS + (BILABIAL,)}


def rows(result: dict) -> list[str]:
  """The table's rows: the entries of `result` that hold metrics, in order."""
  return [k for k, v in result.items() if isinstance(v, dict)]


def table(result: dict, scale: dict[str, float]) -> str:
  """The metrics of every row in the reporting scale, one line per row."""
  width = max(16, max(len(r) for r in rows(result)) + 2)
  metrics = metrics_of(result)
  head = f"{'':<{width}}" + "".join(
      f"{_TITLE[k] + ' x' + _exp(scale[k]):>14}" for k in metrics)
  lines = [head]
  for row in rows(result):
    cells = "".join(f"{_fmt(result[row][k] * scale[k]):>14}" for k in metrics)
    lines.append(f"{row.replace('_', ' '):<{width}}{cells}")
  return "\n".join(lines)


def _exp(s: float) -> str:
  e = -round(math.log10(s)) if s > 0 else 0
  return f"1e{e}"


def _fmt(v: float) -> str:
  return "n/a" if math.isnan(v) else f"{v:.4f}"


def _numbers(row: dict) -> dict:
  return {k: (None if math.isnan(v) else v) for k, v in row.items()}


def write_json(path: str, result: dict, scale: dict, split: str, step: int,
               **extra) -> None:
  """The table's numbers, unscaled, with the scale, split, sequence count and step."""
  out = {row: _numbers(result[row]) for row in rows(result)}
  out.update(scale=scale, split=split, sequences=result["sequences"], step=step, **extra)
  fileio.write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")


def population_table(summary: dict, scale: dict[str, float]) -> str:
  """Each member's mean +- half the 95% interval over seeds, then each paired
  difference from the reference with its interval (`intervals.summarize`)."""
  names = list(summary["members"])
  width = max(16, max(len(n) for n in names) + 2)
  metrics = [k for k in METRICS + (BILABIAL,) if k in next(iter(summary["members"].values()))["mean"]]
  head = [_TITLE[k] + " x" + _exp(scale[k]) for k in metrics]
  means = {name: [_pm(row["mean"][k], row["ci95"][k], scale[k]) for k in metrics]
           for name, row in summary["members"].items()}
  diffs = {name: [_diff(row[k]["mean"], row[k]["ci95"], scale[k]) for k in metrics]
           for name, row in summary["differences"].items()}
  cell = 2 + max(len(c) for cells in [head, *means.values(), *diffs.values()] for c in cells)

  def line(name, cells):
    return f"{name:<{width}}" + "".join(f"{c:>{cell}}" for c in cells)

  lines = [line("", head)] + [line(name, cells) for name, cells in means.items()]
  lines.append(f"difference from {summary['reference']} (mean [95% interval]; * excludes 0):")
  lines += [line(name, cells) for name, cells in diffs.items()]
  return "\n".join(lines)


def _pm(mean: float, ci: list[float] | None, scale: float) -> str:
  if math.isnan(mean):
    return "n/a"
  if ci is None:
    return f"{mean * scale:.4f}"
  return f"{mean * scale:.4f} +- {(ci[1] - ci[0]) / 2 * scale:.4f}"


def _diff(mean: float, ci: list[float] | None, scale: float) -> str:
  if math.isnan(mean):
    return "n/a"
  if ci is None:
    return f"{mean * scale:+.4f}"
  star = "*" if intervals.excludes_zero(ci) else " "
  return f"{mean * scale:+.4f} [{ci[0] * scale:+.4f},{ci[1] * scale:+.4f}]{star}"


def write_population_json(path: str, summary: dict, baselines: dict, scale: dict, split: str,
                          sequences: int, settings: dict[str, dict],
                          steps: dict[str, dict[str, int]]) -> None:
  """A population's numbers, unscaled: `intervals.summarize`'s, with each member's
  sampler settings and checkpoint step per seed, the two baselines, scale, split
  and sequence count."""
  def clean(x):
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list):
      return [clean(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x

  out = clean(summary)
  for name, row in out["members"].items():
    row.update(settings=settings[name], steps=steps[name])
  out.update({row: _numbers(baselines[row]) for row in ("static_template", "mean_motion")})
  out.update(scale=scale, split=split, sequences=sequences)
  fileio.write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
