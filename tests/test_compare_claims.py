"""The claims' statistics, verdicts and metrics (lang_image/compare_claims.py)."""

import math

import numpy as np
import pytest

from lang_image import compare_claims as cc
from lang_image.evaluators import scenes_sets

# Two-sided 95 % quantiles t_{0.975, df} from published tables.
T_TABLE = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 9: 2.262157, 30: 2.042272}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_tables(df):
  assert cc.t_quantile(0.975, df) == pytest.approx(T_TABLE[df], abs=2e-6)


def test_t_quantile_refuses_bad_arguments():
  with pytest.raises(ValueError, match="integer df >= 1"):
    cc.t_quantile(0.975, 0)
  with pytest.raises(ValueError, match="0.5 < p < 1"):
    cc.t_quantile(0.2, 3)


@pytest.mark.parametrize("values", [[1.0, 2.5, -0.5], [3.0, 1.0, 4.0, 1.5, 5.0]])
def test_paired_interval_is_the_student_t_interval(values):
  x = np.asarray(values, np.float64)
  n = len(x)
  half = T_TABLE[n - 1] * x.std(ddof=1) / np.sqrt(n)
  mean, low, high = cc.paired_interval(values)
  assert mean == pytest.approx(x.mean(), abs=1e-12)
  assert (low, high) == pytest.approx((x.mean() - half, x.mean() + half), abs=1e-5)


def test_paired_interval_needs_two_values():
  assert math.isnan(cc.paired_interval([])[0])
  mean, low, high = cc.paired_interval([2.0])
  assert mean == 2.0 and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("direction, low, high, expected", [
    ("above", 0.5, 3.0, "holds"), ("above", -3.0, -0.5, "refuted"),
    ("above", -1.0, 2.0, "inconclusive"),
    ("below", -3.0, -0.5, "holds"), ("below", 0.5, 3.0, "refuted"),
    ("below", -1.0, 2.0, "inconclusive"),
    # At or above, margin 1 point: B may lead by up to 1 point.
    ("at_or_above", -0.9, 2.0, "holds"), ("at_or_above", -4.0, -1.1, "refuted"),
    ("at_or_above", -1.5, 0.5, "inconclusive"), ("at_or_above", -3.0, -0.9, "inconclusive"),
    (None, -1.0, 2.0, "reference"),
])
def test_each_verdict_is_reachable(direction, low, high, expected):
  assert cc.verdict(direction, low, high, n=3) == expected


def test_verdict_without_an_interval():
  assert cc.verdict("above", math.nan, math.nan, n=1) == "inconclusive"
  assert cc.verdict("above", math.nan, math.nan, n=0) == "no data"
  with pytest.raises(ValueError, match="unknown claim direction 'over'"):
    cc.verdict("over", 0.0, 1.0, n=3)


SCENES_ROW = {"zero_shot/top1": 90.0, "zero_shot/colour/top1": 99.0, "zero_shot/full/top1": 12.0,
              "zero_shot/full/top1_unseen": 3.0, "linear_probe/texture/top1": 50.0,
              "linear_probe/texture/val_top1": 99.0, "linear_probe/size/top1": 80.0,
              "linear_probe/size/mean_per_class_recall": 1.0, "retrieval/i2t_r1": 2.0,
              "retrieval/t2i_r1": 3.0, "retrieval/i2t_r5": 50.0}


def test_metrics_pick_the_hardest_label_set_and_the_probe_sets():
  assert cc.zero_shot(SCENES_ROW) == 12.0
  assert cc.probe_sets(SCENES_ROW) == ["texture", "size"]
  assert cc.linear_probe(SCENES_ROW) == 65.0
  assert cc.retrieval(SCENES_ROW) == 2.5
  shapes = {"zero_shot/top1": 40.0, "linear_probe/top1": 30.0, "retrieval/i2t_r1": 1.0}
  assert cc.zero_shot(shapes) == 40.0 and cc.linear_probe(shapes) == 30.0
  assert cc.retrieval(shapes) is None  # t2i missing.
  assert cc.zero_shot({"zero_shot/full/top1": ""}) is None  # An empty CSV cell.


def test_hardest_label_set_is_scenes_last():
  assert cc.ZERO_SHOT_SETS == scenes_sets.ZERO_SHOT
  assert cc.HARDEST_ZERO_SHOT == "full"


def test_claims_of_the_issue_are_all_there():
  texts = {(c.a, c.metric, c.direction, c.paper) for c in cc.PAPER_CLAIMS}
  assert texts >= {
      ("nclip", "zero_shot", "below", "2210.09304"),
      ("nclip", "linear_probe", "at_or_above", "2210.09304"),
      ("xclip", "zero_shot", "at_or_above", "2210.09304"),
      ("xclip", "linear_probe", "at_or_above", "2210.09304"),
      ("rankclip", "zero_shot", "above", "2404.09387"),
      ("rankclip", "retrieval", "above", "2404.09387"),
      ("cliplite", "linear_probe", "at_or_above", "2112.07133"),
      ("cliplite", "zero_shot", "at_or_above", "2112.07133"),
      ("siglip", "zero_shot", None, "2303.15343")}
  assert all(c.b == "clip" and c.metric in cc.METRICS for c in cc.PAPER_CLAIMS)


def test_claims_for_keeps_those_whose_configs_ran():
  claims = cc.claims_for(["untrained", "clip", "nclip"])
  assert [c.text for c in claims] == [
      "nCLIP below CLIP in zero-shot", "nCLIP at or above CLIP in linear probe",
      "clip above the untrained towers in linear probe",
      "nclip above the untrained towers in linear probe"]
  assert all(c.b == "untrained" and c.direction == "above" for c in claims[2:])
  assert cc.claims_for(["clip", "xclip"])[0].a == "xclip"
  assert cc.claims_for(["xclip"]) == ()


def _row(config, seed, zero_shot, probe):
  return {"config": config, "seed": seed, "zero_shot/full/top1": zero_shot,
          "linear_probe/texture/top1": probe, "linear_probe/size/top1": probe}


def test_judge_claim_pairs_seeds():
  rows = [_row("clip", 0, 30.0, 60.0), _row("clip", 1, 32.0, 61.0), _row("clip", 2, 31.0, 59.0),
          _row("clip", 7, 99.0, 99.0),  # No nclip run with seed 7: left out.
          _row("nclip", 2, 20.0, 60.0), _row("nclip", 0, 21.0, 61.0), _row("nclip", 1, 24.0, 60.0)]
  claim = next(c for c in cc.PAPER_CLAIMS if c.a == "nclip" and c.metric == "zero_shot")
  result = cc.judge_claim(claim, rows)
  assert result["seeds"] == [0, 1, 2] and result["differences"] == [-9.0, -8.0, -11.0]
  d = np.array([-9.0, -8.0, -11.0])
  half = T_TABLE[2] * d.std(ddof=1) / np.sqrt(3)
  assert result["mean"] == pytest.approx(d.mean())
  assert (result["low"], result["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
  assert result["verdict"] == "holds" and result["n"] == 3
  probe = cc.judge_claim(next(c for c in cc.PAPER_CLAIMS
                              if c.a == "nclip" and c.metric == "linear_probe"), rows)
  assert probe["differences"] == [1.0, -1.0, 1.0] and probe["verdict"] == "inconclusive"
  # Runs of a config with the metric missing pair with nothing.
  assert cc.judge_claim(claim, [r for r in rows if r["config"] != "nclip"])["verdict"] == "no data"
  assert [r["claim"] for r in cc.judge_claims(rows)][:2] == [
      "nCLIP below CLIP in zero-shot", "nCLIP at or above CLIP in linear probe"]
