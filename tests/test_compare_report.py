"""The comparison's tables and pictures (lang_image/compare_report.py)."""

import csv
import math

import pytest

from lang_image import compare_claims as cc
from lang_image import compare_report as report


def test_summary_is_mean_and_sample_std_over_seeds():
  rows = [{"config": "a", "seed": 0, "zero_shot/top1": 10.0},
          {"config": "a", "seed": 1, "zero_shot/top1": 14.0, "retrieval/i2t_r1": 1.0},
          {"config": "b", "seed": 0, "zero_shot/top1": 50.0, report.COLLAPSE: 0.8,
           report.MUTUAL_INFORMATION: 1.5}]
  summary = report.summarise(rows)
  assert summary[0]["zero_shot/top1"] == pytest.approx((12.0, 2.8284271))
  # A metric only some seeds have is summarised over those.
  assert summary[0]["retrieval/i2t_r1"] == (1.0, 0.0)
  assert summary[1]["zero_shot/top1"] == (50.0, 0.0)
  table = report.markdown_table(summary)
  assert "| `a` | 2 | 12.0 ± 2.8 | 1.0 ± 0.0 |" in table
  assert "| `b` | 1 | 0.80 | 1.50 |" in table  # The nCLIP table: b only.
  assert "| `a` | 2 | 0" not in table.split("nCLIP heads")[1]


def _scenes(config, seed, base, nclip=False):
  row = {"config": config, "seed": seed, "zero_shot/full/top1": base,
         "zero_shot/colour/top1": 90.0 + seed, "zero_shot/count/top1": 50.0,
         "zero_shot/colour_shape/top1": 30.0, "zero_shot/shape/top1": 40.0,
         "zero_shot/full/top1_unseen": 1.0, "retrieval/i2t_r1": 2.0, "retrieval/t2i_r1": 3.0,
         "linear_probe/texture/top1": base + 40, "linear_probe/size/top1": 80.0,
         "linear_probe/size/val_top1": 85.0, "knn/size/top1": 70.0}
  if nclip:
    row.update({"nclip_heads/image/mutual_information": 1.25,
                "nclip_heads/text/mutual_information": 1.5,
                "nclip_heads/image/distinct_argmax": 100.0 + seed,
                "nclip_heads/text/distinct_argmax": 120.0})
  return row


ROWS = ([_scenes("untrained", s, 0.3) for s in range(3)]
        + [_scenes("clip", s, 10.0 + s) for s in range(3)]
        + [_scenes("nclip", s, 5.0 + 2 * s, nclip=True) for s in range(3)])


def test_columns_show_every_label_set_easy_to_hard_and_every_probe_set():
  titles = [t for _, t in report.columns(report.summarise(ROWS))]
  assert titles == ["zero-shot colour", "zero-shot shape", "zero-shot count",
                    "zero-shot colour_shape", "zero-shot full", "zero-shot full, held-out",
                    "R@1 image->text", "R@1 text->image", "linear probe size",
                    "linear probe texture"]


def test_nclip_heads_table_only_for_configs_that_have_them():
  table = report.markdown_table(report.summarise(ROWS))
  nclip_part = table.split("nCLIP heads")[1]
  assert "| `nclip` | 3 | 1.25 | 1.50 | 101.0 | 120.0 |" in nclip_part
  assert "`clip`" not in nclip_part and "`untrained`" in table.split("nCLIP heads")[0]
  assert "| `clip` | 3 | 91.0 ± 1.0 | 40.0 ± 0.0 | 50.0 ± 0.0 | 30.0 ± 0.0 | 11.0 ± 1.0 |" \
      in table


def test_claims_files_and_pictures_are_written(tmp_path):
  results = cc.judge_claims(ROWS)
  assert [r["claim"] for r in results] == [
      "nCLIP below CLIP in zero-shot", "nCLIP at or above CLIP in linear probe",
      "clip above the untrained towers in linear probe",
      "nclip above the untrained towers in linear probe"]
  text = report.claims_markdown(results)
  # nclip - clip in zero-shot per seed: -5, -4, -3: mean -4.0, CI -4 +- 4.30 / sqrt(3).
  half = 4.302653 / math.sqrt(3)
  assert (f"| nCLIP below CLIP in zero-shot | arXiv:2210.09304 | `nclip` | `clip` | zero_shot "
          f"| 3 | -4.0 | [{-4 - half:+.1f}, {-4 + half:+.1f}] | **holds** |") in text
  assert "| sanity | `clip` | `untrained` | linear_probe | 3 |" in text
  assert "margin 1 point" in report.rule_text()
  path = tmp_path / "claims.csv"
  report.write_claims_csv(str(path), results)
  with open(path) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["claim", "paper", "A", "B", "metric", "direction", "n_seeds",
                           "mean_diff", "ci_low", "ci_high", "verdict", "seeds", "differences"]
  assert rows[0]["differences"] == "-5.0000;-4.0000;-3.0000" and rows[0]["seeds"] == "0;1;2"
  assert float(rows[0]["ci_low"]) == pytest.approx(-4 - half, abs=1e-4)
  assert rows[0]["verdict"] == "holds"
  one_seed = cc.judge_claims([r for r in ROWS if r["seed"] == 0])
  report.write_claims_csv(str(path), one_seed)
  with open(path) as f:
    assert next(csv.DictReader(f))["ci_low"] == ""  # No interval from one seed.
  assert "| 1 | -5.0 |  | **inconclusive** |" in report.claims_markdown(one_seed)
  report.plot_claims(str(tmp_path / "claims.png"), results + one_seed)
  report.plot(str(tmp_path / "comparison.png"), report.summarise(ROWS))
  for name in ("claims.png", "comparison.png"):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / name).stat().st_size > 10_000
