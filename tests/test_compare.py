"""The objective comparison's command: budgets, runs, untrained towers, end to end."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import app

from configs import clip as clip_config
from lang_image import compare, compare_report, untrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_budget_quick_and_flags():
  assert compare.budget(False) == compare.FULL
  quick = compare.budget(True)
  assert quick.variant == "tiny" and quick.seeds == (0, 1, 2) and quick.parallel == 2
  assert quick.steps < compare.FULL.steps
  given = compare.budget(True, steps=7, batch=16, seeds=["3", "4"], parallel=1,
                         extra=["eval.pictures=True", "log_every=2"])
  assert (given.steps, given.batch, given.seeds, given.parallel) == (7, 16, (3, 4), 1)
  # An override of the same key replaces the budget's own (main.py refuses a repeated flag).
  assert given.overrides == ("eval.pictures=True", "log_every=2")
  with pytest.raises(app.UsageError, match="--steps must be at least 1, got 0"):
    compare.budget(False, steps=0)
  with pytest.raises(app.UsageError, match="--seeds must name distinct seeds"):
    compare.budget(False, seeds=["1", "1"])


def test_job_commands(tmp_path):
  b = compare.budget(True, steps=5, batch=32, extra=["data.variant=default"])
  j = compare.job("nclip", 2, b, "scenes", str(tmp_path))
  assert j.workdir == str(tmp_path / "runs" / "nclip_seed2")
  assert j.final == os.path.join(j.workdir, "eval", "step_00000005.json")
  assert j.command[1].endswith("main.py")
  assert j.command[2] == (f"--config={ROOT}/configs/nclip.py:steps=5,batch=32,seed=2,"
                          "data=scenes")
  assert j.command[3:] == (f"--workdir={j.workdir}", "--config.eval.pictures=False",
                           "--config.data.variant=default")
  u = compare.job("untrained", 1, compare.budget(True), "scenes", str(tmp_path))
  assert u.command[1:3] == ("-m", "lang_image.untrained")
  assert "/configs/clip.py:" in u.command[3] and "seed=1" in u.command[3]
  assert u.final.endswith("untrained_seed1/eval/step_00000000.json")
  assert "--config.data.variant=tiny" in u.command


def test_run_env(tmp_path, monkeypatch):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  one = compare.run_env(1, str(tmp_path))
  assert one["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "xla_cache")
  assert one["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
  two = compare.run_env(2, str(tmp_path))
  assert two["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=1 "
                              + compare.SINGLE_THREAD_XLA)


# A stand-in run: records when it ran, then writes its final evaluation (or fails).
_FAKE = """
import json, os, sys, time
final, times, fail = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
start = time.time(); time.sleep(0.6)
with open(times, "w") as f: json.dump([start, time.time()], f)
if fail: sys.exit(3)
os.makedirs(os.path.dirname(final), exist_ok=True)
with open(final, "w") as f: json.dump({"metrics": {"zero_shot/top1": 1.0}}, f)
"""


def _fake_jobs(tmp_path, n, failing=()):
  jobs = []
  for i in range(n):
    workdir = str(tmp_path / f"run{i}")
    final = os.path.join(workdir, "eval", "step_00000001.json")
    jobs.append(compare.Job(f"c{i}", 0, workdir, final, (
        sys.executable, "-c", _FAKE, final, str(tmp_path / f"times{i}.json"),
        "1" if i in failing else "0")))
  return jobs


def test_run_all_runs_in_parallel_and_reruns_only_the_failed(tmp_path):
  jobs = _fake_jobs(tmp_path, 3, failing=(2,))
  done = []
  failed = compare.run_all(jobs, 2, dict(os.environ), lambda j, s: done.append(j.name))
  assert [j.name for j in failed] == ["c2"] and sorted(done) == ["c0", "c1"]
  spans = [json.load(open(tmp_path / f"times{i}.json")) for i in range(3)]
  assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # Two at once...
  assert spans[2][0] >= min(spans[0][1], spans[1][1])  # ...and no more.
  # Finished runs are not run again; the failed one is.
  os.remove(tmp_path / "times0.json")
  assert [j.name for j in compare.run_all(jobs, 2, dict(os.environ))] == ["c2"]
  assert not os.path.exists(tmp_path / "times0.json")


def test_prepare_data_builds_the_runs_data_and_tokenizer_once(tmp_path):
  b = compare.budget(True)
  j = compare.job("clip", 0, b, "scenes", str(tmp_path / "out"))
  data_dir = tmp_path / "data"
  j = dataclasses.replace(j, command=j.command + (f"--config.data.data_dir={data_dir}",))
  compare.prepare_data([j])
  built = sorted(p.name for p in data_dir.rglob("*.model"))
  assert built and any("tiny" in str(p) for p in data_dir.rglob("*.array_record*"))
  before = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
  compare.prepare_data([j])  # Prepared data is reused, not rebuilt.
  assert {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()} == before


def test_read_run_adds_the_nclip_training_monitors(tmp_path):
  j = _fake_jobs(tmp_path, 1)[0]
  os.makedirs(os.path.dirname(j.final))
  with open(j.final, "w") as f:
    json.dump({"step": 1, "metrics": {"zero_shot/full/top1": 5.0}}, f)
  logged = [{"step": 1, "nclip/mean_entropy_ratio": 0.9, "nclip/mutual_information": 0.2},
            {"step": 2, "nclip/mean_entropy_ratio": 0.4, "nclip/mutual_information": 0.1},
            {"step": 2, "nclip/mean_entropy_ratio": 0.5, "nclip/mutual_information": 0.3}]
  with open(os.path.join(j.workdir, "train_metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in logged))
  # After a resume the re-run step's last record counts.
  assert compare.read_run(j) == {"zero_shot/full/top1": 5.0, compare_report.COLLAPSE: 0.5,
                                 compare_report.MUTUAL_INFORMATION: 0.3}


def test_untrained_state_is_the_seeds_initial_training_state(tiny_scenes_dir):
  config = clip_config.get_config("data=scenes,steps=3,batch=16")
  config.data.update(data_dir=tiny_scenes_dir, variant="tiny")
  first = untrained.initial(config)
  assert first.step == 0 and int(first.state["step"]) == 0
  again = first.trainer.init_state(config.seed)
  config.seed = 1
  other = untrained.initial(config, first.dataset).state
  leaves = [jax.tree.leaves(s["params"]) for s in (first.state, again, other)]
  assert all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[1]))
  assert not all(np.array_equal(a, c) for a, c in zip(leaves[0], leaves[2]))


@pytest.mark.slow
def test_quick_command_trains_tests_claims_and_reuses_runs(tmp_path, tiny_scenes_dir):
  out = str(tmp_path / "cmp")
  args = [sys.executable, "-m", "lang_image.compare", f"--out={out}", "--quick",
          "--configs=clip,nclip", "--seeds=0,1", "--steps=4", "--batch=32",
          f"--override=data.data_dir={tiny_scenes_dir},eval.batch_size=240,"
          "eval.linear_probe_examples=300,log_every=2"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=ROOT)
  result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(out, "runs.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [(r["config"], r["seed"]) for r in rows] == [
      ("untrained", "0"), ("untrained", "1"), ("clip", "0"), ("clip", "1"), ("nclip", "0"),
      ("nclip", "1")]
  for row in rows:
    for key in ("zero_shot/full/top1", "zero_shot/colour/top1", "retrieval/i2t_r1",
                "linear_probe/texture/top1", "linear_probe/size/top1"):
      assert 0.0 <= float(row[key]) <= 100.0, (key, row)
  assert rows[0]["zero_shot/full/top1"] != rows[1]["zero_shot/full/top1"]  # Seeds differ.
  assert 0.0 < float(rows[4][compare_report.COLLAPSE]) <= 1.0
  with open(os.path.join(out, "claims.csv")) as f:
    claims = list(csv.DictReader(f))
  assert [c["A"] for c in claims] == ["nclip", "nclip", "clip", "nclip"]
  assert all(c["n_seeds"] == "2" and c["ci_low"] != "" for c in claims)
  assert all(c["verdict"] in ("holds", "refuted", "inconclusive") for c in claims)
  with open(os.path.join(out, "claims.md")) as f:
    text = f.read()
  assert "4 steps, batch 32, seeds 0, 1; data scenes (variant tiny)" in text
  with open(os.path.join(out, "table.md")) as f:
    assert "| `untrained` | 2 |" in f.read()
  for name in ("comparison.png", "claims.png"):
    assert os.path.getsize(os.path.join(out, name)) > 10_000
  # A second call reuses the finished runs instead of training again.
  again = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0 and "seed 0 (" not in again.stdout
  assert len(os.listdir(os.path.join(out, "runs", "nclip_seed0", "eval"))) == 1
