"""The training-step benchmark runs from its documented command line and reports figures that
agree with each other (no timing is asserted: the machine is shared)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_train_step_benchmark_reports_consistent_figures_for_jax_and_the_torch_peer():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "train_step.py"),
       "--precision=float32,bf16_f32acc", "--torch=float32", "--batch=8", "--repeats=1",
       "--warmup=1", "--json"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  variants = {v["name"]: v for v in report["variants"]}
  assert set(variants) == {"lang_image float32", "lang_image bf16_f32acc", "torch float32"}
  assert report["peak_flops"]["bf16_f32acc"] > report["peak_flops"]["float32"] > 0
  for v in variants.values():
    assert v["step_s"] > 0 and v["pairs_per_s"] == pytest.approx(8 / v["step_s"])
    assert v["mfu_f32_peak"] == pytest.approx(
        report["analytic_flops_per_step"] / v["step_s"] / report["peak_flops"]["float32"])
  for name in ("lang_image float32", "lang_image bf16_f32acc"):
    v = variants[name]
    # XLA's count adds the elementwise work and the optimizer to the analytic matmul count.
    assert 1.0 <= v["xla_flops"] / v["analytic_flops"] < 1.1, v
    assert v["compile_s"] > 0
  # The switch does what it says in the compiled program: all tower matmuls bf16 -> f32.
  assert "bf16 x bf16 -> f32" not in variants["lang_image float32"]["dots"]
  assert variants["lang_image bf16_f32acc"]["dots"]["bf16 x bf16 -> f32"] >= 200
