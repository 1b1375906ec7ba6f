"""Means over seeds with 95% confidence intervals, and paired differences.

The question a population answers: what would a member score on this test
split if it were trained again with another seed? Each seed's run is one draw
of the training randomness (initial parameters, batch order, sample stream),
so a member's seeds are a sample of that distribution, and its metric's mean
over seeds gets a Student-t interval:

  mean +- t(0.975, S-1) * sd / sqrt(S)       (sd with S-1 in the denominator)

Members of one seed share initial parameters and batches (common random
numbers), so a difference between two members is taken seed by seed, d_s =
x_member,s - x_reference,s, and the same interval is put on the mean of d_s:
the paired design removes what the seed does to both. The intervals hold the
test split fixed, as published tables do: they say how much of a difference
the training randomness explains, not how a different test set would score.
Exact under normally distributed seed effects; with S = 1 there is no
interval (None).
"""

from __future__ import annotations

import math

import numpy as np

METHOD = ("mean over seeds with a Student-t 95% interval (t(0.975, S-1) * sd / sqrt(S)); "
          "differences paired by seed; the test split held fixed")


def interval(values) -> tuple[float, list[float] | None]:
  """(mean, [lo, hi] 95% interval or None for fewer than two values) of per-seed values."""
  x = np.asarray(values, np.float64)
  mean = float(x.mean())
  if len(x) < 2 or not np.isfinite(x).all():
    return mean, None
  from scipy import stats  # imported here: train.py loads this module (via report.py) at start-up
  half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
  return mean, [mean - half, mean + half]


def summarize(per_seed: dict[str, dict[int, dict[str, float]]], reference: str,
              metrics: tuple[str, ...]) -> dict:
  """Each member's mean and interval over seeds, and its paired difference from `reference`.

  Args:
    per_seed: {member: {seed: {metric: value}}}; every member has the same seeds.
    reference: the member the others are compared with.

  Returns:
    {'members': {name: {'seeds', 'mean', 'ci95'}}, 'reference',
     'differences': {name: {metric: {'mean', 'ci95'}}}, 'method'}.

  Raises:
    ValueError: for an unknown reference or members trained on different seeds.
  """
  if reference not in per_seed:
    raise ValueError(f"reference member {reference!r} is not one of {sorted(per_seed)}")
  seeds = sorted(per_seed[reference])
  for name, runs in per_seed.items():
    if sorted(runs) != seeds:
      raise ValueError(f"member {name!r} has seeds {sorted(runs)}, {reference!r} has {seeds}: "
                       "differences are paired by seed")
  members, differences = {}, {}
  for name, runs in per_seed.items():
    row = {"seeds": {str(s): dict(runs[s]) for s in seeds}, "mean": {}, "ci95": {}}
    for k in metrics:
      row["mean"][k], row["ci95"][k] = interval([runs[s][k] for s in seeds])
    members[name] = row
    if name != reference:
      differences[name] = {}
      for k in metrics:
        mean, ci = interval([runs[s][k] - per_seed[reference][s][k] for s in seeds])
        differences[name][k] = {"mean": mean, "ci95": ci}
  return {"members": members, "reference": reference, "differences": differences,
          "method": METHOD}


def excludes_zero(ci: list[float] | None) -> bool:
  """True when an interval exists and lies entirely on one side of zero."""
  return ci is not None and (ci[0] > 0 or ci[1] < 0)
