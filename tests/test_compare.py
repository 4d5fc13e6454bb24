"""The objective comparison: runs, tables and plot, from the command line."""

import csv
import os
import subprocess
import sys

import pytest

from lang_image import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_summary_is_mean_and_sample_std_over_seeds():
  rows = [{"config": "a", "seed": 0, "zero_shot/top1": 10.0},
          {"config": "a", "seed": 1, "zero_shot/top1": 14.0},
          {"config": "b", "seed": 0, "zero_shot/top1": 50.0, compare.COLLAPSE: 0.8,
           compare.MUTUAL_INFORMATION: 1.5}]
  summary = compare.summarise(rows)
  assert summary[0]["zero_shot/top1"] == pytest.approx((12.0, 2.8284271))
  assert summary[1]["zero_shot/top1"] == (50.0, 0.0)
  table = compare.markdown_table(summary)
  assert "| `a` | 2 | 12.0 ± 2.8 |" in table
  assert "| `b` | 1 | 50.0 ± 0.0 | 0.80 | 1.50 |" in table


@pytest.mark.slow
def test_command_trains_each_config_and_writes_tables(tmp_path, tiny_data_dir):
  out = str(tmp_path / "cmp")
  args = [sys.executable, "-m", "lang_image.compare", f"--out={out}",
          "--configs=nclip,cliplite", "--seeds=0", "--steps=4", "--batch=32",
          f"--override=data.data_dir={tiny_data_dir},data.variant=tiny,eval.batch_size=240,"
          "eval.linear_probe_examples=300,log_every=2"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=ROOT)
  result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(out, "runs.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["config"] for r in rows] == ["nclip", "cliplite"]
  for row in rows:
    for key, _ in compare.COLUMNS:
      assert 0.0 <= float(row[key]) <= 100.0, (key, row)
  assert 0.0 < float(rows[0][compare.COLLAPSE]) <= 1.0
  assert rows[1][compare.COLLAPSE] == ""
  assert os.path.getsize(os.path.join(out, "comparison.png")) > 10_000
  with open(os.path.join(out, "table.md")) as f:
    assert "| `cliplite` | 1 |" in f.read()
  # A second call reuses the finished runs instead of training again.
  again = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0 and "Resumed" not in again.stderr
  assert len(os.listdir(os.path.join(out, "runs", "nclip_seed0", "eval"))) == 1
