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


@pytest.mark.slow
def test_device_check_runs_every_stage_on_a_cpu_in_smoke_mode(tmp_path):
  """benchmarks/device_check.sh --smoke: the GPU script's stages on a toy model (CPU), so
  that the 8-minute GPU run is not its first run. The peer stage needs torch/transformers."""
  pytest.importorskip("transformers")
  out = tmp_path / "out"
  result = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "device_check.sh"),
                           "--smoke", f"--out={out}", "--budget=1500"],
                          capture_output=True, text=True, timeout=1600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  batch = json.loads((out / "largest_batch.json").read_text().splitlines()[-1])
  assert batch["fits"] and batch["batch"] % 8 == 0 and batch["batch"] >= 16
  assert batch["step_bytes"] <= 0.9 * 0.25 * 2**30
  attention = json.loads((out / "attention.json").read_text())
  assert attention["batch"] == batch["batch"]
  names = [v["name"] for v in attention["variants"]]
  assert names == ["lang_image float32 attention=xla", "lang_image float32 attention=auto",
                   "torch float32"], names
  # auto resolves to xla on a CPU: the same compiled program.
  xla, auto = attention["variants"][:2]
  assert xla["xla_flops"] == auto["xla_flops"] and xla["final_loss"] == auto["final_loss"]
  objectives = json.loads((out / "objectives.json").read_text())
  assert [v["objective"] for v in objectives["variants"]] == ["clip", "siglip", "xclip"]
  remat = {v["name"]: v["xla_bytes"] for v in json.loads((out / "remat.json").read_text())
           ["variants"]}
  assert remat["lang_image float32 remat=full"] < remat["lang_image float32 remat=none"]
  report = (out / "report.md").read_text()
  for heading in ("### Attention kernels and the PyTorch peer", "### Objectives",
                  "### Rematerialisation"):
    assert heading in report
  assert "no result" not in report


@pytest.mark.slow
def test_aot_compile_reports_per_chip_figures_for_a_small_tpu_topology(tmp_path):
  """benchmarks/aot_compile.py on v5e:2x2 (4 abstract TPU v5e chips described by libtpu), for
  the data and the fsdp layout of a small CLIP."""
  import importlib.util
  if importlib.util.find_spec("libtpu") is None:
    pytest.skip("libtpu is not importable, and TPU topologies cannot be described without it: "
                "pip install -e '.[tpu]', or pip install --target DIR libtpu==0.0.42.1 and run "
                "with PYTHONPATH=DIR")
  out = tmp_path / "aot.jsonl"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "aot_compile.py"), "--topology=v5e:2x2",
       "--config=configs/clip.py:batch=64", "--layout=data,fsdp", f"--json={out}"],
      capture_output=True, text=True, timeout=1800, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  data, fsdp = [json.loads(line) for line in out.read_text().splitlines()]
  assert (data["mesh"], fsdp["mesh"]) == ("data=4,fsdp=1", "data=1,fsdp=4")
  table = [line for line in result.stdout.splitlines() if line.startswith("| clip ")]
  assert len(table) == 2
  for r in (data, fsdp):
    assert r["chip"] == "v5e" and r["chips"] == 4 and r["fits"]
    assert 0 < r["optimal_seconds"] and 0 < r["mfu"] < 1
    assert r["mfu"] == pytest.approx(r["flops"] / r["optimal_seconds"] / 197e12)
  # FSDP splits parameters and AdamW moments 4 ways: each chip holds less of them.
  assert fsdp["argument_bytes"] < 0.5 * data["argument_bytes"]
  # Per chip: a quarter of the FLOPs XLA counts for the whole step on one CPU device.
  import jax
  import jax.numpy as jnp
  from lang_image import config as config_lib, parallel
  from lang_image.train import Trainer
  config = config_lib.load_config_file(f"{ROOT}/configs/clip.py:batch=64")
  config.mesh.update(data=1, fsdp=1)
  mesh = parallel.make_mesh(config.mesh, devices=jax.devices()[:1])
  trainer = Trainer(config, mesh, int(config.data.vocab_size))
  size, length = config.model.image_size, config.model.max_len
  batch = {"image": jax.ShapeDtypeStruct((64, size, size, 3), jnp.uint8),
           "text": jax.ShapeDtypeStruct((64, length), jnp.int32)}
  with jax.set_mesh(mesh):
    whole = trainer.train_step.lower(trainer.abstract_state, batch).compile().cost_analysis()
  assert data["flops"] == pytest.approx(whole["flops"] / 4, rel=0.05)
