"""Evaluators run during training, at its end, and standalone (`lang_image.evaluate`).

On one eval set (`eval_sets`): zero-shot classification and retrieval in the objective's
embedding space; a linear probe and k-NN classification on the frozen pooled image features
(the towers' output before any projection or head, which every objective trains); for a
model whose objective terms have heads with per-example distributions (nCLIP), their collapse
measures on every test image and caption (`prototype_usage`). Which tasks run is set by
config.eval (`zero_shot`, `retrieval`, `linear_probe`, `knn`, `prototype_usage`); a task the
eval set or the model cannot support (retrieval without captions, classification without
labels, prototype usage without such heads) is skipped.

Metric names: `zero_shot/{top1, top5, top1_<subset>, mean_per_class_recall}`,
`retrieval/{i2t,t2i}_r{1,5,10}` and `retrieval/{i2t,t2i}_{mean,median}_rank`,
`linear_probe/{top1, top5, mean_per_class_recall, val_top1, l2}`,
`knn/{top1, top5, mean_per_class_recall}`; accuracies and recalls in percent;
`<term>_heads/{image,text}/{mutual_information, ...}` (`prototype_usage`). An eval set
with named label sets (`eval_sets.LabelSet`, e.g. scenes' colour, count, texture) reports each
as `<task>/<label set>/<metric>`, on the images the label set applies to. Ties are broken
at random in expectation everywhere (`ranks`, `classification`, `knn`).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from absl import logging

from lang_image import storage
from lang_image.evaluators import (eval_sets, global_chunks, knn, linear_probe,
                                   prototype_usage, retrieval, zero_shot)
# Importing a loader's module registers its eval sets.
from lang_image.evaluators import (benchmark_sets, scenes_sets, shapes_sets,  # noqa: F401
                                   source_sets, tfds_sets)

TASKS = ("zero_shot", "retrieval", "linear_probe", "knn", prototype_usage.TASK)


def embed_all(embed_fn, images, batch_size: int, sharding) -> np.ndarray:
  """Applies a jitted embedding fn to host data (an array or an `eval_sets.ImageStream`) in
  padded, batch-sharded chunks."""
  return np.concatenate([
      global_chunks.to_host(embed_fn(chunk)).astype(np.float32)[:rows]
      for chunk, rows in global_chunks.global_chunks(images, batch_size, sharding)])


@dataclasses.dataclass
class Embeddings:
  """What the latest evaluation computed, for pictures: unit embeddings of the test images,
  of the classes (zero-shot) and of the captions (retrieval), None where not computed."""
  images: np.ndarray
  classes: np.ndarray | None = None
  captions: np.ndarray | None = None


class Evaluator:
  """The configured tasks on one eval set (by default the embedded dataset's eval split)."""

  def __init__(self, dataset, eval_cfg, sharding, eval_set: eval_sets.EvalSet | None = None):
    # A config saved before a task existed does not name it: off.
    self.tasks = [t for t in TASKS if eval_cfg.get(t, False)]
    probes = "linear_probe" in self.tasks or "knn" in self.tasks
    self.eval_set = eval_set or shapes_sets.embedded(dataset, eval_cfg, probes=probes)
    es = self.eval_set
    labellings = label_sets(es)
    # Label sets by name ('' for the eval set's own labels) for each kind of task.
    self._zero_shot = {k: v for k, v in labellings.items() if v.classes and v.templates}
    self._probe = {k: v for k, v in labellings.items() if v.fit is not None and es.fit}
    skip = {"zero_shot": not self._zero_shot, "retrieval": es.captions is None,
            "linear_probe": not self._probe, "knn": not self._probe,
            # Without heads that give distributions it reports nothing (`__call__`).
            prototype_usage.TASK: False}
    for task in self.tasks:
      if skip[task]:
        logging.info("Skipping %s on %s: the dataset does not provide what it needs.", task,
                     es.name)
    self.tasks = [t for t in self.tasks if not skip[t]]
    self._cfg = eval_cfg
    self._sharding = sharding
    n_dev = sharding.mesh.size
    self._batch = -(-eval_cfg.batch_size // n_dev) * n_dev
    if "zero_shot" in self.tasks:
      self._prompt_tokens = {k: dataset.tokenize(zero_shot.prompts(v.classes, v.templates))
                             for k, v in self._zero_shot.items()}
    self._caption_tokens = None
    if es.captions is not None and {"retrieval", prototype_usage.TASK} & set(self.tasks):
      self._caption_tokens = dataset.tokenize(es.captions)
    self.last: Embeddings | None = None

  @property
  def num_classes(self) -> int:
    """Classes of the eval set's own labels."""
    return _num_classes(label_sets(self.eval_set)[""])

  def _embed(self, fn, data) -> np.ndarray:
    return embed_all(fn, data, self._batch, self._sharding)

  @property
  def hardest_num_classes(self) -> int | None:
    """Classes of the labelling with the most classes (None without labels)."""
    counts = [_num_classes(labelling) for labelling in label_sets(self.eval_set).values()]
    return max(counts, default=None)

  def __call__(self, embed_images, embed_texts, image_features=None,
               head_distributions=None) -> dict:
    """The metrics of the configured tasks with the model's functions of global arrays
    (`Trainer.bind_embedders`); without `image_features` no probes, without
    `head_distributions` no prototype usage."""
    es = self.eval_set
    self.last = Embeddings(images=self._embed(embed_images, es.test.images))
    metrics = {}
    if image_features is not None and {"linear_probe", "knn"} & set(self.tasks):
      metrics.update(self._probes(image_features))
    if "zero_shot" in self.tasks:
      for name, labelling in self._zero_shot.items():
        prompt_emb = self._embed(embed_texts, self._prompt_tokens[name])
        classes = zero_shot.class_embeddings(prompt_emb, len(labelling.classes))
        if not name:
          self.last.classes = classes
        keep = labelling.test >= 0
        accuracy = zero_shot.zero_shot_accuracy(
            self.last.images[keep], classes, labelling.test[keep],
            subsets={k: np.asarray(v)[keep] for k, v in labelling.subsets.items()})
        metrics.update({f"zero_shot/{_prefix(name)}{k}": v for k, v in accuracy.items()})
    if "retrieval" in self.tasks:
      self.last.captions = self._embed(embed_texts, self._caption_tokens)
      scores = retrieval.retrieval_metrics(self.last.images, self.last.captions,
                                           es.caption_image)
      metrics.update({f"retrieval/{k}": v for k, v in scores.items()})
    if prototype_usage.TASK in self.tasks and head_distributions:
      metrics.update(prototype_usage.head_usage(
          head_distributions, es.test.images, self._caption_tokens, self._batch,
          self._sharding, self.hardest_num_classes))
    return metrics

  def _probes(self, image_features) -> dict:
    es = self.eval_set
    fit_x = self._embed(image_features, es.fit.images)
    test_x = self._embed(image_features, es.test.images)
    val_x = (self._embed(image_features, es.validation.images) if "linear_probe" in self.tasks
             else None)
    metrics = {}
    for name, labelling in self._probe.items():
      num_classes = _num_classes(labelling)
      fit_y, test_y = labelling.fit, labelling.test
      # Classes without fit examples cannot be learnt: the probes are scored on the others.
      seen = np.isin(np.arange(num_classes), fit_y[fit_y >= 0])
      fit_rows = fit_y >= 0
      fit = (fit_x[fit_rows], fit_y[fit_rows])
      test_rows = (test_y >= 0) & seen[np.maximum(test_y, 0)]
      test = (test_x[test_rows], test_y[test_rows])
      prefix = _prefix(name)
      if "linear_probe" in self.tasks:
        val_y = labelling.validation
        val_rows = (val_y >= 0) & seen[np.maximum(val_y, 0)]
        result = linear_probe.linear_probe(fit, (val_x[val_rows], val_y[val_rows]), test,
                                           num_classes=num_classes)
        metrics.update({f"linear_probe/{prefix}{k}": float(v) for k, v in result.items()})
      if "knn" in self.tasks:
        result = knn.knn_classification(fit, test, num_classes, k=self._cfg.knn_k,
                                        temperature=self._cfg.knn_temperature)
        metrics.update({f"knn/{prefix}{k}": v for k, v in result.items()})
    return metrics


def label_sets(es: eval_sets.EvalSet) -> dict[str, eval_sets.LabelSet]:
  """An eval set's labellings by name: '' for its own labels (metrics '<task>/<metric>'), if
  it has any, then its named label sets (metrics '<task>/<name>/<metric>')."""
  out = {}
  if es.test.labels is not None:
    out[""] = eval_sets.LabelSet(
        classes=es.classes, test=np.asarray(es.test.labels), templates=es.templates,
        subsets=es.subsets, fit=None if es.fit is None else np.asarray(es.fit.labels),
        validation=None if es.validation is None else np.asarray(es.validation.labels))
  out.update(es.label_sets)
  return out


def _num_classes(labelling: eval_sets.LabelSet) -> int:
  if labelling.classes is not None:
    return len(labelling.classes)
  fit_max = labelling.fit.max() if labelling.fit is not None else 0
  return int(max(labelling.test.max(), fit_max)) + 1


def _prefix(name: str) -> str:
  return f"{name}/" if name else ""


def write_json(workdir: str, step: int, metrics: dict, examples: int | None = None) -> str:
  """W/eval/step_N.json: the metrics and, when given, on how many test examples."""
  path = storage.join(workdir, "eval", f"step_{step:08d}.json")
  record = {"step": step, "metrics": metrics}
  if examples is not None:
    record["examples"] = int(examples)
  storage.write_text(path, json.dumps(record, indent=2, sort_keys=True))
  return path


def read_json_history(workdir: str) -> list[dict]:
  """Every evaluation a run logged in W/eval/, by step: [{"step": N, "metrics": {...}}]."""
  directory = storage.join(workdir, "eval")
  records = []
  for name in storage.listdir(directory):
    if name.startswith("step_") and name.endswith(".json"):
      records.append(json.loads(storage.read_text(storage.join(directory, name))))
  return sorted(records, key=lambda r: r["step"])
