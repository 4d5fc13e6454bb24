"""The standalone evaluator: exactly the numbers the training run logged for its last
checkpoint, in CLIP_benchmark's JSON schema, with pictures; bad input."""

import glob
import json
import math
import os
import subprocess
import sys
import time

import jsonschema
import pytest

import cli_runs
from lang_image import evaluate, saved_config
from lang_image.errors import ConfigError

CLASSIFICATION = {"type": "number", "minimum": 0.0, "maximum": 1.0}
# The result files of CLIP_benchmark (LAION-AI/CLIP_benchmark, `clip_benchmark eval`):
# accuracies and recalls as fractions; extra keys allowed, as it writes some of its own.
SCHEMA = {
    "type": "object",
    "required": ["dataset", "model", "pretrained", "task", "metrics"],
    "properties": {
        "dataset": {"type": "string", "minLength": 1},
        "model": {"type": "string", "minLength": 1},
        "pretrained": {"type": "string", "minLength": 1},
        "task": {"enum": ["zeroshot_classification", "zeroshot_retrieval", "linear_probe",
                          "knn_classification"]},
        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "allOf": [
        {"if": {"properties": {"task": {"const": "zeroshot_retrieval"}}},
         "then": {"properties": {"metrics": {
             "required": [f"{d}_retrieval_recall@{k}" for d in ("image", "text")
                          for k in (1, 5, 10)],
             "patternProperties": {"recall@": CLASSIFICATION}}}},
         "else": {"properties": {"metrics": {
             "required": ["acc1", "acc5", "mean_per_class_recall"],
             "properties": {"acc1": CLASSIFICATION, "acc5": CLASSIFICATION,
                            "mean_per_class_recall": CLASSIFICATION}}}}},
    ],
}
# (file's task, its metric) -> (logged metric, factor from percent).
SAME_NUMBERS = {
    ("zeroshot_classification", "acc1"): ("zero_shot/top1", 100.0),
    ("zeroshot_classification", "acc5"): ("zero_shot/top5", 100.0),
    ("zeroshot_classification", "acc1_unseen"): ("zero_shot/top1_unseen", 100.0),
    ("zeroshot_classification", "mean_per_class_recall"): (
        "zero_shot/mean_per_class_recall", 100.0),
    ("zeroshot_retrieval", "text_retrieval_recall@1"): ("retrieval/i2t_r1", 100.0),
    ("zeroshot_retrieval", "image_retrieval_recall@5"): ("retrieval/t2i_r5", 100.0),
    ("zeroshot_retrieval", "text_retrieval_median_rank"): ("retrieval/i2t_median_rank", 1.0),
    ("zeroshot_retrieval", "image_retrieval_mean_rank"): ("retrieval/t2i_mean_rank", 1.0),
    ("linear_probe", "acc1"): ("linear_probe/top1", 100.0),
    ("linear_probe", "l2"): ("linear_probe/l2", 1.0),
    ("knn_classification", "acc1"): ("knn/top1", 100.0),
    ("knn_classification", "mean_per_class_recall"): ("knn/mean_per_class_recall", 100.0),
}
TASK_PREFIX = {"zeroshot_classification": "zero_shot", "zeroshot_retrieval": "retrieval",
               "linear_probe": "linear_probe", "knn_classification": "knn"}


def test_reproduces_the_logged_final_evaluation_exactly(trained_run, tmp_path):
  workdir = trained_run.workdir
  assert trained_run.result.returncode == 0, trained_run.result.stderr[-3000:]
  out = str(tmp_path / "bench")
  start = time.time()
  # No --config: the model and data come from the W/config.json the run wrote.
  result = subprocess.run([sys.executable, "-m", "lang_image.evaluate", f"--workdir={workdir}",
                           f"--out={out}"], env=cli_runs.env(), capture_output=True, text=True,
                          timeout=600, cwd=cli_runs.ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "step_00000060.json")) as f:
    logged = json.load(f)["metrics"]
  files = sorted(glob.glob(os.path.join(out, "step_00000060", "*.json")))
  assert [os.path.basename(f) for f in files] == [
      f"lang_image_shapes_{t}.json" for t in
      ("knn_classification", "linear_probe", "zeroshot_classification", "zeroshot_retrieval")]
  records = {}
  for path in files:
    with open(path) as f:
      record = json.load(f)
    jsonschema.validate(record, SCHEMA)
    assert record["dataset"] == "lang_image_shapes" and record["model"] == "clip mu/8"
    assert record["pretrained"] == os.path.join(workdir, "checkpoints", "60")
    records[record["task"]] = record["metrics"]
    # One number per logged metric of the task.
    prefix = TASK_PREFIX[record["task"]] + "/"
    assert len(record["metrics"]) == len([k for k in logged if k.startswith(prefix)])
  for (task, name), (key, scale) in SAME_NUMBERS.items():
    assert records[task][name] == logged[key] / scale, (task, name)  # exactly
  assert records["zeroshot_retrieval"]["text_retrieval_recall@10"] > 0
  # Pictures of this evaluation.
  for name in ("similarity", "zero_shot_predictions", "embedding_pca"):
    path = os.path.join(workdir, "pictures", "lang_image_shapes", f"{name}.png")
    assert os.path.getmtime(path) >= start and os.path.getsize(path) > 2_000, path
  assert os.path.getmtime(os.path.join(workdir, "pictures", "training_curves.png")) >= start


def test_missing_tfds_dataset_fails_with_one_sentence_before_compiling(trained_run, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "lang_image.evaluate", f"--workdir={trained_run.workdir}",
       "--datasets=shapes,cifar100", f"--tfds_data_dir={tmp_path}"],
      env=cli_runs.env(), capture_output=True, text=True, timeout=300, cwd=cli_runs.ROOT)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "tfds dataset 'cifar100' is not prepared in" in errors[0]


def test_bad_workdir_step_and_task_raise_one_clear_error(trained_run, tmp_path):
  with pytest.raises(ConfigError, match="no checkpoint in .*; train there first"):
    evaluate.resolve_step(str(tmp_path))
  with pytest.raises(ConfigError, match=r"no checkpoint for step 45 .*saved steps are \[30, 60\]"):
    evaluate.resolve_step(trained_run.workdir, 45)
  assert evaluate.resolve_step(trained_run.workdir) == 60
  with pytest.raises(ConfigError, match="does not exist .*; pass the run's --config instead"):
    saved_config.load(str(tmp_path))
  with pytest.raises(ConfigError, match=r"unknown task 'probe'; the tasks are \['zero_shot'"):
    evaluate.check_tasks(["zero_shot", "probe"])


HEAD_MEASURES = ("mutual_information", "mean_entropy", "sample_entropy", "distinct_argmax",
                 "distinct_argmax_fraction_of_classes")


def test_nclip_heads_prototype_usage_in_the_final_and_the_standalone_evaluation(
    tmp_path, tiny_data_dir):
  """nCLIP on 2 devices: its final evaluation reports both heads' collapse measures on all 480
  test images and their captions; the standalone evaluator writes the same numbers."""
  workdir, out = str(tmp_path / "nclip"), str(tmp_path / "bench")
  env = cli_runs.env(devices=2)
  result = subprocess.run(cli_runs.train_command(
      workdir, tiny_data_dir, "--config.eval.zero_shot=False", "--config.eval.retrieval=False",
      "--config.eval.linear_probe=False", "--config.eval.knn=False",
      "--config.eval.pictures=False", "--config.eval_every=0", steps=8, config="nclip",
      log_every=4), env=env, capture_output=True, text=True, timeout=900, cwd=cli_runs.ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "step_00000008.json")) as f:
    record = json.load(f)
  logged, prototypes = record["metrics"], 4096
  assert record["examples"] == 480
  assert sorted(logged) == sorted(f"nclip_heads/{m}/{k}" for m in ("image", "text")
                                  for k in HEAD_MEASURES)
  for modality in ("image", "text"):
    got = {k: logged[f"nclip_heads/{modality}/{k}"] for k in HEAD_MEASURES}
    assert 0 <= got["mutual_information"] <= math.log(prototypes)
    assert got["mutual_information"] == pytest.approx(
        max(got["mean_entropy"] - got["sample_entropy"], 0.0), abs=1e-9)
    assert 0 <= got["sample_entropy"] <= got["mean_entropy"] + 1e-6
    assert got["mean_entropy"] <= math.log(prototypes) + 1e-6
    assert isinstance(got["distinct_argmax"], int) and 1 <= got["distinct_argmax"] <= prototypes
    # The embedded data's 48 classes are its only labelling.
    assert got["distinct_argmax_fraction_of_classes"] == got["distinct_argmax"] / 48
  result = subprocess.run([sys.executable, "-m", "lang_image.evaluate", f"--workdir={workdir}",
                           "--tasks=prototype_usage", "--pictures=False", f"--out={out}"],
                          env=env, capture_output=True, text=True, timeout=600,
                          cwd=cli_runs.ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  files = glob.glob(os.path.join(out, "step_00000008", "*.json"))
  assert [os.path.basename(f) for f in files] == ["lang_image_shapes_prototype_usage.json"]
  with open(files[0]) as f:
    assert json.load(f)["metrics"] == logged  # exactly


def test_a_clip_run_reports_no_prototype_usage(trained_run):
  for step in (30, 60):
    with open(os.path.join(trained_run.workdir, "eval", f"step_{step:08d}.json")) as f:
      metrics = json.load(f)["metrics"]
    assert "zero_shot/top1" in metrics
    assert not [k for k in metrics if "_heads/" in k or "prototype" in k]
