"""The accelerator scripts off their accelerators: benchmarks/device_check.sh in its CPU smoke
mode, and benchmarks/aot_compile.py for a small TPU topology (when libtpu is importable)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  # --from_json prints the same rows from the saved cases; the roofline time is at least the
  # FLOPs at the chip's peak.
  saved = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "aot_compile.py"), f"--from_json={out}"],
      capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert [l for l in saved.stdout.splitlines() if l.startswith("| clip ")] == table
  for line, r in zip(table, (data, fsdp)):
    assert float(line.split("|")[-2]) >= r["flops"] / 197e12 > 0
  # FSDP splits parameters and AdamW moments 4 ways: each chip holds less of them.
  assert fsdp["argument_bytes"] < 0.5 * data["argument_bytes"]
  # Per chip: a quarter of the FLOPs XLA counts for the whole step on one CPU device.
  import jax
  import jax.numpy as jnp
  from lang_image import config as config_lib, parallel
  from lang_image.trainer import Trainer
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
