"""Evaluation results as CLIP_benchmark writes them, one JSON object per dataset and task:

    {"dataset": "cifar10", "model": "clip mu/8", "pretrained": "W/checkpoints/500",
     "task": "zeroshot_classification", "language": "en", "step": 500,
     "metrics": {"acc1": 0.91, "acc5": 0.99, "mean_per_class_recall": 0.91}}

Tasks and their metrics (accuracies and recalls as fractions in [0, 1], as CLIP_benchmark
reports them; this package's own metrics are in percent):

    zeroshot_classification  acc1, acc5, mean_per_class_recall (+ acc1_<subset>, ...)
    zeroshot_retrieval       image_retrieval_recall@k (text -> image), text_retrieval_recall@k
                             (image -> text) for k = 1, 5, 10, and image_/text_retrieval_
                             mean_rank and median_rank (1-based ranks, not fractions)
    linear_probe             acc1, acc5, mean_per_class_recall, val_acc1, l2
    knn_classification       acc1, acc5, mean_per_class_recall

An eval set's named label sets keep their name in front: `colour/acc1`, `texture/acc1`.
The heads' collapse measures (`prototype_usage`), which CLIP_benchmark does not have, go in one
more record of task `prototype_usage` under this package's own names and units
(`nclip_heads/image/mutual_information`, ...).
"""

from __future__ import annotations

import json
import re

from lang_image.evaluators import prototype_usage

TASK_NAMES = {"zero_shot": "zeroshot_classification", "retrieval": "zeroshot_retrieval",
              "linear_probe": "linear_probe", "knn": "knn_classification",
              prototype_usage.TASK: prototype_usage.TASK}


def _classification(name: str, value: float) -> tuple[str, float]:
  top = re.fullmatch(r"(val_)?top(\d+)(_\w+)?", name)
  if top:
    return f"{top[1] or ''}acc{top[2]}{top[3] or ''}", value / 100.0
  if name == "mean_per_class_recall":
    return name, value / 100.0
  return name, value  # e.g. the probe's penalty l2


def _retrieval(name: str, value: float) -> tuple[str, float]:
  direction, rest = name.split("_", 1)
  # CLIP_benchmark names a direction by what is retrieved: text -> image is image retrieval.
  target = {"t2i": "image", "i2t": "text"}[direction]
  recall = re.fullmatch(r"r(\d+)", rest)
  if recall:
    return f"{target}_retrieval_recall@{recall[1]}", value / 100.0
  return f"{target}_retrieval_{rest}", value


def records(metrics: dict, dataset: str, model: str, pretrained: str, step: int) -> list[dict]:
  """Evaluator metrics ('<task>/<name>' in percent) -> one CLIP_benchmark record per task."""
  by_task = {}
  for key, value in metrics.items():
    if prototype_usage.is_metric(key):
      by_task.setdefault(prototype_usage.TASK, {})[key] = value
      continue
    task, name = key.split("/", 1)
    # A named label set's metrics keep its name: 'zero_shot/colour/top1' -> 'colour/acc1'.
    label_set, _, name = name.rpartition("/")
    convert = _retrieval if task == "retrieval" else _classification
    new_name, new_value = convert(name, float(value))
    if label_set:
      new_name = f"{label_set}/{new_name}"
    by_task.setdefault(task, {})[new_name] = new_value
  return [{"dataset": dataset, "model": model, "pretrained": pretrained,
           "task": TASK_NAMES[task], "language": "en", "step": int(step), "metrics": values}
          for task, values in by_task.items()]


def write(directory: str, record: dict) -> str:
  """Writes directory/<dataset>_<task>.json; returns its path."""
  from lang_image import storage  # noqa: PLC0415
  path = storage.join(directory, storage.safe_name(f"{record['dataset']}_{record['task']}.json"))
  storage.write_text(path, json.dumps(record, indent=2, sort_keys=True))
  return path
