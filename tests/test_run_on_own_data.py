"""A run on one's own webdataset shards, by config alone: zero-shot and retrieval on their
labelled test shard (CLIP_benchmark's layout), never the embedded data's numbers; the saved
config holds the resolved paths; a finished run is reported, not redone."""

import glob
import json
import os
import subprocess
import sys

import labelled_fixtures as lf
import cli_runs


def command(root, workdir, data_dir, *extra, steps=4):
  os.makedirs(data_dir, exist_ok=True)
  return [sys.executable, os.path.join(cli_runs.ROOT, "main.py"),
          f"--config={cli_runs.ROOT}/configs/clip.py:data=wds:{root}/train/{{0..1}}.tar,"
          f"batch=16,steps={steps}",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.vocab_size=300", "--config.model.max_len=16", "--config.log_every=2",
          "--config.eval.linear_probe=False", "--config.eval.knn=False", *extra]


def run(cmd):
  result = subprocess.run(cmd, env=cli_runs.env(), capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def snapshot(workdir):
  """Every file of the run that a repeated command must leave alone, with its mtime."""
  paths = [p for p in glob.glob(os.path.join(workdir, "**"), recursive=True)
           if os.path.isfile(p) and "/checkpoints/" not in p]
  return {p: os.stat(p).st_mtime_ns for p in paths}


def test_own_shards_are_evaluated_on_their_labelled_test_shard_and_not_redone(tmp_path):
  root = lf.write_benchmark(str(tmp_path / "digits"), train=96, test=40, shards=2)
  workdir, data_dir = str(tmp_path / "run"), str(tmp_path / "data")
  cmd = command(root, workdir, data_dir, f"--config.eval.dataset={root}")
  first = run(cmd)
  assert f"Evaluating on '{root}': config.eval.dataset names it." in first.stderr
  assert "Eval set digits: 40 labelled images, 4 classes, 2 prompt templates." in first.stderr
  assert "shapes" not in first.stderr.split("Evaluating on")[1]
  final = first.stdout.strip().splitlines()[-1]
  assert final.startswith("final ") and "zero_shot/top1=" in final and "retrieval/i2t_r1=" in final
  with open(os.path.join(workdir, "eval", "step_00000004.json")) as f:
    metrics = json.load(f)["metrics"]
  assert 0 <= metrics["zero_shot/top1"] <= 100 and "zero_shot/top1_unseen" not in metrics
  for name in ("similarity", "zero_shot_predictions", "embedding_pca"):
    assert os.path.isfile(os.path.join(workdir, "pictures", "digits", f"{name}.png"))
  # Nothing is written beside the user's data.
  assert sorted(os.listdir(root)) == ["classnames.txt", "test", "train",
                                      "zeroshot_classification_templates.txt"]
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  # What evaluation needs in a new shell, resolved: no environment variable involved.
  assert saved["data"]["data_dir"] == os.path.abspath(data_dir)
  assert saved["eval"]["dataset"] == root

  before = snapshot(workdir)
  again = run(cmd)
  assert "This run is already complete" in again.stderr
  assert "--config.force_eval=True evaluates again" in again.stderr
  assert again.stdout.strip().splitlines()[-1] == final
  assert "Evaluating step" not in again.stderr and "Compiling" not in again.stderr
  assert snapshot(workdir) == before  # no new event file, evaluation or picture

  forced = run(cmd + ["--config.force_eval=True", "--config.eval.pictures=False"])
  assert "Evaluating step 4 on 40 examples" in forced.stderr
  assert "Compiling" not in forced.stderr  # nothing left to train


def test_auto_on_own_data_never_reports_the_embedded_numbers(tmp_path):
  root = lf.write_benchmark(str(tmp_path / "digits"), train=48, test=8, shards=2)
  workdir = str(tmp_path / "run")
  result = run(command(root, workdir, str(tmp_path / "data"), steps=2))
  assert "No evaluation: the run trains on its own data (wds:" in result.stderr
  assert "--config.eval.dataset=" in result.stderr
  assert not [l for l in result.stdout.splitlines() if l.startswith("final ")]
  assert not os.path.exists(os.path.join(workdir, "eval"))
  assert "zero_shot" not in result.stderr and "lang_image_shapes" not in result.stderr
