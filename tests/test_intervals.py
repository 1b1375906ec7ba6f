"""Intervals over seeds: known answers, coverage, and the paired summary."""

import numpy as np
import pytest

from mmtalker_jax.training import intervals

METRICS = ("lve", "mve")


def test_the_interval_of_known_numbers():
  mean, (lo, hi) = intervals.interval([1.0, 2.0, 3.0])
  half = 4.302653 / np.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
  assert mean == 2.0 and (lo, hi) == pytest.approx((2 - half, 2 + half), rel=1e-6)
  assert intervals.interval([5.0, 5.0, 5.0]) == (5.0, [5.0, 5.0])
  assert intervals.interval([4.0]) == (4.0, None)  # one seed: no interval
  assert intervals.interval([1.0, float("nan")])[1] is None
  assert intervals.excludes_zero([0.1, 0.3]) and intervals.excludes_zero([-0.3, -0.1])
  assert not intervals.excludes_zero([-0.1, 0.3]) and not intervals.excludes_zero(None)


@pytest.mark.parametrize("true_difference", [0.0, 1.0])
def test_a_true_difference_is_covered_in_about_95_percent_of_repeated_draws(true_difference):
  # Three seeds; a seed's effect is shared by both members (common random
  # numbers) and much larger than the members' own noise, as in training.
  rng = np.random.default_rng(0)
  draws, covered, excluded, paired_width, own_width = 4000, 0, 0, 0.0, 0.0
  for _ in range(draws):
    seed_effect = rng.normal(0, 5.0, 3)
    per_seed = {"ref": {s: {"lve": 10 + seed_effect[s] + rng.normal(0, 0.2), "mve": 1.0}
                        for s in range(3)},
                "other": {s: {"lve": 10 + true_difference + seed_effect[s] + rng.normal(0, 0.2),
                              "mve": 1.0} for s in range(3)}}
    summary = intervals.summarize(per_seed, "ref", METRICS)
    lo, hi = summary["differences"]["other"]["lve"]["ci95"]
    covered += lo <= true_difference <= hi
    excluded += intervals.excludes_zero([lo, hi])
    own = summary["members"]["other"]["ci95"]["lve"]
    paired_width += hi - lo
    own_width += own[1] - own[0]
  # Binomial spread of the coverage over 4000 draws: about 0.0034.
  assert 0.935 < covered / draws < 0.965
  if true_difference == 0.0:
    assert 0.035 < excluded / draws < 0.065  # the false-positive rate is 5%
  else:
    assert excluded / draws > 0.6  # pairing removes the seed effect (sd 5)
  # Unpaired, the seed effect would hide the difference: on average a member's
  # own interval is about 18x (5 / (0.2 sqrt 2)) wider than the paired one.
  assert 14 < own_width / paired_width < 22


def test_the_summary_pairs_by_seed_and_names_what_is_wrong():
  per_seed = {"a": {0: {"lve": 1.0, "mve": 2.0}, 1: {"lve": 3.0, "mve": 2.0}},
              "b": {0: {"lve": 2.0, "mve": 2.5}, 1: {"lve": 4.0, "mve": 2.5}}}
  summary = intervals.summarize(per_seed, "a", METRICS)
  assert summary["reference"] == "a" and list(summary["differences"]) == ["b"]
  assert summary["members"]["b"]["seeds"] == {"0": {"lve": 2.0, "mve": 2.5},
                                              "1": {"lve": 4.0, "mve": 2.5}}
  assert summary["members"]["b"]["mean"] == {"lve": 3.0, "mve": 2.5}
  # b is a + 1 in LVE and a + 0.5 in MVE on every seed: zero-width paired intervals.
  assert summary["differences"]["b"]["lve"] == {"mean": 1.0, "ci95": [1.0, 1.0]}
  assert summary["differences"]["b"]["mve"] == {"mean": 0.5, "ci95": [0.5, 0.5]}
  with pytest.raises(ValueError, match="'c' is not one of"):
    intervals.summarize(per_seed, "c", METRICS)
  per_seed["b"] = {0: per_seed["b"][0], 2: per_seed["b"][1]}
  with pytest.raises(ValueError, match="paired by seed"):
    intervals.summarize(per_seed, "a", METRICS)
