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
       "--variants=float32;bf16_f32acc;bf16_f32acc,norm=autodiff,gelu=erfc",
       "--torch=float32", "--batch=8", "--repeats=1", "--warmup=1", "--profile", "--json"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  variants = {v["name"]: v for v in report["variants"]}
  before = "lang_image bf16_f32acc norm=autodiff gelu=erfc"
  assert set(variants) == {"lang_image float32", "lang_image bf16_f32acc", before,
                           "torch float32"}
  assert report["peak_flops"]["bf16_f32acc"] > report["peak_flops"]["float32"] > 0
  for v in variants.values():
    assert v["step_s"] > 0 and v["pairs_per_s"] == pytest.approx(8 / v["step_s"])
    assert v["mfu_f32_peak"] == pytest.approx(
        report["analytic_flops_per_step"] / v["step_s"] / report["peak_flops"]["float32"])
  for name in ("lang_image float32", "lang_image bf16_f32acc", before):
    v = variants[name]
    # XLA's count adds the elementwise work and the optimizer to the analytic matmul count.
    assert 1.0 <= v["xla_flops"] / v["analytic_flops"] < 1.1, v
    assert v["compile_s"] > 0
  # The switch does what it says in the compiled program: all tower matmuls bf16 -> f32.
  assert "bf16 x bf16 -> f32" not in variants["lang_image float32"]["dots"]
  assert variants["lang_image bf16_f32acc"]["dots"]["bf16 x bf16 -> f32"] >= 200
  # The baseline keys trace the earlier implementations: XLA counts more elementwise
  # FLOPs in the erfc GELU than in the erf one.
  assert variants[before]["xla_flops"] > variants["lang_image bf16_f32acc"]["xla_flops"]
  # --profile: op time by kind for every lang_image variant, covering a good part of a step
  # (ops run concurrently, so the sum may exceed the step's wall time).
  assert set(report["profile"]) == {n for n in variants if n.startswith("lang_image")}
  for name, by_kind in report["profile"].items():
    assert sum(by_kind.values()) > 0.3 * variants[name]["step_s"], (name, by_kind)
  assert report["profile"]["lang_image bf16_f32acc"]["ynn dot"] > 0


def test_rankclip_forms_benchmark_reports_the_gap_between_the_two_list_mle_forms():
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "rankclip_forms.py"),
       "--batches=12", "--dims=64", "--seeds=1", "--json"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert len(report["rows"]) == 4                    # 2 scales x 2 kinds of embeddings
  initial, large = report["max_by_scale"]["14.29"], report["max_by_scale"]["54"]
  assert 0 < initial["loss"] < 1e-2 < large["loss"]  # the eps matters at 54, hardly at 14.3
  assert all(0 <= row["tails"] <= 1 for row in report["rows"])


@pytest.mark.slow
def test_checkpoint_save_benchmark_reports_each_variant():
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "checkpoint_save.py"), "--rounds=1",
       "--steps=1", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report["arrays"] > 100 and report["state_mib"] > 1
  assert set(report["saves"]) == {"before", "no_sums", "checksums"}
  for figures in report["saves"].values():
    assert 0 < figures["blocking_s"] <= figures["total_s"]
  assert report["checksum_pass_s"] > 0 and report["train_step_s"] > 0
