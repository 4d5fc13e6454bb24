"""Evaluators run during training and at the end: zero-shot classification and retrieval in
the objective's embedding space, and a linear probe on the frozen pooled image features
(the towers' output before any projection or head, which every objective trains)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from lang_image.evaluators import linear_probe, retrieval, zero_shot


def embed_all(embed_fn, array: np.ndarray, batch_size: int, sharding) -> np.ndarray:
  """Applies a jitted embedding fn to a host array in padded, batch-sharded chunks."""
  n = len(array)
  out = []
  for start in range(0, n, batch_size):
    chunk = array[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    # Every process holds the whole eval set, so each fills its own shards from it.
    global_chunk = jax.make_array_from_callback(chunk.shape, sharding, lambda idx: chunk[idx])
    emb = multihost_utils.process_allgather(embed_fn(global_chunk), tiled=True)
    out.append(np.asarray(emb, np.float32)[:batch_size - pad])
  return np.concatenate(out)


class Evaluator:
  """Zero-shot, retrieval and linear probe on held-in-memory eval splits."""

  def __init__(self, dataset, eval_cfg, sharding):
    from lang_image.data import pipeline
    self._data = pipeline.load_split(dataset, eval_cfg.split)
    self._probe = None
    if eval_cfg.linear_probe:
      # Fit on single-object train images, choose the penalty on validation, score on the
      # eval split. The held-out pairs have no train images: the probe covers the rest.
      fit = pipeline.load_split(dataset, "train", limit=eval_cfg.linear_probe_examples,
                                single_object=True)
      val = pipeline.load_split(dataset, "validation")
      seen = np.isin(np.arange(len(dataset.classes)), fit["label"])
      self._probe = {"train": fit, "validation": _keep(val, seen[val["label"]])}
      self._probe_test = seen[self._data["label"]]
    self._cfg = eval_cfg
    self._sharding = sharding
    n_dev = sharding.mesh.size
    self._batch = -(-eval_cfg.batch_size // n_dev) * n_dev
    self._classes = dataset.classes
    self._prompt_tokens = dataset.tokenize(zero_shot.prompts(dataset.classes, dataset.templates))

  def __call__(self, embed_images, embed_texts, image_features=None) -> dict:
    image_emb = embed_all(embed_images, self._data["image"], self._batch, self._sharding)
    metrics = {}
    if self._probe is not None and image_features is not None:
      metrics.update(self._linear_probe(image_features))
    if self._cfg.zero_shot:
      prompt_emb = embed_all(embed_texts, self._prompt_tokens, self._batch, self._sharding)
      class_emb = zero_shot.class_embeddings(prompt_emb, len(self._classes))
      held_out = self._data["held_out"]
      accuracy = zero_shot.zero_shot_accuracy(
          image_emb, class_emb, self._data["label"],
          subsets={"seen": ~held_out, "unseen": held_out})
      metrics.update({f"zero_shot/{k}": v for k, v in accuracy.items()})
    if self._cfg.retrieval:
      text_emb = embed_all(embed_texts, self._data["text"], self._batch, self._sharding)
      recall = retrieval.retrieval_recall(image_emb, text_emb)
      metrics.update({f"retrieval/{k}": v for k, v in recall.items()})
    return metrics


  def _linear_probe(self, image_features) -> dict:
    def features(images):
      return embed_all(image_features, images, self._batch, self._sharding)
    fit, val = self._probe["train"], self._probe["validation"]
    keep = self._probe_test
    result = linear_probe.linear_probe(
        (features(fit["image"]), fit["label"]), (features(val["image"]), val["label"]),
        (features(self._data["image"][keep]), self._data["label"][keep]),
        num_classes=len(self._classes))
    return {f"linear_probe/{k}": float(v) for k, v in result.items()}


def _keep(split: dict, mask: np.ndarray) -> dict:
  return {k: v[mask] for k, v in split.items()}


def write_json(workdir: str, step: int, metrics: dict) -> str:
  directory = os.path.join(workdir, "eval")
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"step_{step:08d}.json")
  with open(path + ".tmp", "w") as f:
    json.dump({"step": step, "metrics": metrics}, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)
  return path
