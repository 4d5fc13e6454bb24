"""Retrieval eval sets from any data source: `--datasets=wds:/data/val/{00000..00003}.tar`.

A name with a source scheme (`wds:`, `csv:`, `jsonl:`, `tfds:`; lang_image.data.sources)
becomes an image<->text retrieval set: the first `config.eval.source_examples` usable samples
in the source's order, each image's shorter side resized to the model's resolution and centre
cropped, with every caption of the sample (so several captions per image count as several
true matches). Faulty samples are passed over, as in training, and counted in the log.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
from absl import logging

from lang_image.data import ops, pipeline, sources
from lang_image.data import preprocess as preprocess_lib
from lang_image.data.sources.base import BadSample
from lang_image.evaluators import eval_sets

EVAL_PP = "decode|resize_small|central_crop"


def is_source(name: str) -> bool:
  """Whether `name` is a data source spec of a kind read from files (wds:, csv:, ...)."""
  try:
    return not sources.kind_of(name).builtin
  except sources.DataError:
    return False


def load(name: str, context: eval_sets.LoadContext) -> eval_sets.EvalSet:
  data_cfg = getattr(context.dataset, "data_cfg", None)
  options = (pipeline.source_options(data_cfg) if data_cfg is not None
             else sources.SourceOptions())
  if context.tfds_data_dir:
    options = dataclasses.replace(options, tfds_data_dir=context.tfds_data_dir)
  source = sources.open_source(name, options)
  preprocess = preprocess_lib.Preprocess(EVAL_PP, ops.Context(image_size=context.image_size))
  limit = int(context.eval_cfg.source_examples)
  images, captions, caption_image = [], [], []
  skipped = collections.Counter()
  rng = np.random.default_rng(0)  # unused by the deterministic eval ops
  for i in range(len(source)):
    if len(images) >= limit:
      break
    try:
      sample = preprocess(source[i], rng)
    except BadSample as e:
      skipped[e.reason] += 1
      continue
    texts = sample["caption"]
    texts = [texts] if isinstance(texts, str) else list(texts)
    captions += texts
    caption_image += [len(images)] * len(texts)
    images.append(sample["image"])
  if not images:
    raise ValueError(f"eval source '{name}' has no usable sample (skipped: {dict(skipped)}); "
                     "check its image and text keys.")
  if skipped:
    logging.warning("Eval set %s: skipped %s.", name, dict(skipped))
  return eval_sets.EvalSet(name=name, test=eval_sets.Split(np.stack(images)),
                           captions=captions, caption_image=np.asarray(caption_image))


eval_sets.register_family(is_source, load, "data sources such as wds:/data/val/{00000..00003}.tar")
