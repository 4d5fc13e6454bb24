"""The command line, end to end: train, evaluate, checkpoint; bad input (killed runs resume:
tests/test_reliability.py)."""

import glob
import json
import os
import subprocess

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from cli_runs import env, train_command as command

CHANCE = 100.0 / 48


def scalars(workdir, tag):
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
  acc.Reload()
  import tensorflow as tf
  return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def test_training_run_learns_evaluates_and_checkpoints(trained_run):
  workdir, result = trained_run.workdir, trained_run.result
  assert result.returncode == 0, result.stderr[-3000:]
  final = result.stdout.strip().splitlines()[-1]
  assert final.startswith("final ") and "zero_shot/top1=" in final
  with open(os.path.join(workdir, "eval", "step_00000060.json")) as f:
    metrics = json.load(f)["metrics"]
  assert metrics["zero_shot/top1"] > 3 * CHANCE, metrics
  assert {"retrieval/i2t_r1", "retrieval/t2i_r10", "zero_shot/top1_unseen",
          "zero_shot/mean_per_class_recall", "retrieval/i2t_median_rank", "knn/top1"} <= set(metrics)
  assert metrics["linear_probe/top1"] > 3 * CHANCE, metrics
  assert metrics["knn/top1"] > 3 * CHANCE, metrics
  loss = scalars(workdir, "train/loss")
  assert loss[60] < loss[10] - 0.3, loss
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["30", "60"]
  assert sorted(os.listdir(os.path.join(workdir, "eval"))) == [
      "step_00000030.json", "step_00000060.json"]
  assert set(scalars(workdir, "eval/zero_shot/top1")) == {30, 60}
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  # The end of the run: its config for later evaluation, and its pictures.
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  assert os.path.getsize(os.path.join(workdir, "pictures", "training_curves.png")) > 5_000


@pytest.mark.parametrize("data_dir, extra, devices, message", [
    ("/tmp", ["--config.optim.lrr=0.1"], 1, "config.optim has no 'lrr'; did you mean 'lr'?"),
    ("/tmp", ["--config.batch_size=100"], 8, "not divisible by the 8 data-parallel devices"),
    ("/no/such/place", [], 1, "data directory '/no/such/place' does not exist"),
])
def test_bad_input_fails_with_one_sentence(tmp_path, data_dir, extra, devices, message):
  result = subprocess.run(command(str(tmp_path / "w"), data_dir, *extra), env=env(devices),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


def test_unwritable_workdir_fails_with_one_sentence(tmp_path, tiny_data_dir):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  result = subprocess.run(command(str(blocker / "w"), tiny_data_dir), env=env(),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "cannot be written" in result.stderr and "choose a writable --workdir" in result.stderr


def test_unquoted_brace_pattern_names_the_shell_and_the_fix(tmp_path):
  """bash expands an unquoted {a..b} into one --config flag per item; absl would keep the last."""
  shards = f"{tmp_path}/shards/{{00000..00003}}.tar"
  typed = f"python main.py --config=configs/clip.py:data=wds:{shards} --workdir={tmp_path}/w"
  result = subprocess.run(["bash", "-c", typed], env=env(), capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "--config is given 4 times" in errors[0] and "expanded by the shell" in errors[0]
  assert "quote the value" in errors[0]
  # Quoted, the pattern reaches the data source whole (here it matches no shard yet).
  quoted = typed.replace("--config=", "--config='").replace(".tar ", ".tar' ")
  result = subprocess.run(["bash", "-c", quoted], env=env(), capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 2
  assert f"shard pattern '{shards}' matches no file" in result.stderr, result.stderr[-2000:]


def test_repeated_override_is_refused(tmp_path):
  result = subprocess.run(command(str(tmp_path / "w"), "/tmp", "--config.optim.lr=1",
                                  "--config.optim.lr=2"), env=env(), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 2
  assert ("error: --config.optim.lr is given 2 times (--config.optim.lr=1, --config.optim.lr=2)"
          in result.stderr), result.stderr[-2000:]
