"""Input pipeline: tfds data source -> grain -> global sharded jax.Arrays.

grain over `tfds.data_source` (array_record, random access) rather than tf.data: batch k of
the shuffled, repeated stream is a pure function of (seed, k), so the data position is one
integer saved with every checkpoint, and a restored run continues with exactly the batch an
uninterrupted run would have read, shuffling included, without replaying the stream.
Each process reads its own strided slice of every epoch's permutation and contributes its
local rows of the global batch through `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import dataclasses
import os

import grain
import jax
import numpy as np

from lang_image import config as config_lib
from lang_image.config import ConfigError

KNOWN_DATA = ("shapes",)


@dataclasses.dataclass
class Dataset:
  """A prepared dataset: tfds builder plus the tokenizer that goes with it."""
  builder: object
  tokenizer: object
  max_len: int
  # Zero-shot classification: class names and prompt templates ("a photo of a {}.").
  classes: list
  templates: list

  def source(self, split: str):
    return self.builder.as_data_source(split)

  def tokenize(self, captions) -> np.ndarray:
    texts = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
    return self.tokenizer.encode(texts, self.max_len)


def open_dataset(data_cfg, max_len: int) -> Dataset:
  """Prepares (on first use) and opens the configured dataset and its tokenizer."""
  if data_cfg.name not in KNOWN_DATA:
    raise ConfigError(f"unknown data '{data_cfg.name}'; the known data are {list(KNOWN_DATA)}.")
  # Imported lazily: tensorflow_datasets is slow to import.
  from lang_image.data import shapes, shapes_tfds, tokenizer as tokenizer_lib
  data_dir = data_cfg.data_dir or config_lib.default_data_dir()
  os.makedirs(data_dir, exist_ok=True)
  builder = shapes_tfds.prepare(data_dir, data_cfg.variant)
  path = data_cfg.tokenizer or tokenizer_lib.shapes_tokenizer(
      data_dir, data_cfg.variant, data_cfg.vocab_size)
  return Dataset(builder, tokenizer_lib.load(path), max_len,
                 list(shapes.CLASSES), list(shapes.PROMPT_TEMPLATES))


def _pick_fields(example):
  return {"image": np.asarray(example["image"], np.uint8), "caption": example["caption"]}


class TrainStream:
  """Endless shuffled global batches; `position` is the index of the next batch."""

  def __init__(self, dataset: Dataset, data_cfg, global_batch: int, sharding, seed: int,
               start_batch: int = 0):
    n_proc, proc = jax.process_count(), jax.process_index()
    if global_batch % n_proc:
      raise ConfigError(f"global batch {global_batch} is not divisible by the {n_proc} "
                        "processes; pick a multiple of the process count.")
    self._dataset = dataset
    self._sharding = sharding
    self._local = (grain.MapDataset.source(dataset.source("train"))
                   .seed(seed).shuffle().repeat(None)
                   .slice(slice(proc, None, n_proc))
                   .map(_pick_fields)
                   .batch(global_batch // n_proc, drop_remainder=True)
                   .map(self._tokenize))
    self.position = start_batch
    options = grain.ReadOptions(num_threads=data_cfg.threads,
                                prefetch_buffer_size=data_cfg.prefetch)
    self._iter = iter(self._local.slice(slice(start_batch, None)).to_iter_dataset(options))

  def _tokenize(self, batch):
    return {"image": batch["image"], "text": self._dataset.tokenize(batch["caption"])}

  def local_batch(self, index: int) -> dict:
    """Random access to this process's rows of batch `index` (for tests and debugging)."""
    return self._local[index]

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    local = next(self._iter)
    self.position += 1
    return to_global(local, self._sharding)


def to_global(local: dict, sharding) -> dict:
  """Builds global batch-sharded arrays from each process's rows."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def load_split(dataset: Dataset, split: str, limit: int | None = None,
               single_object: bool = False) -> dict:
  """A (small) split, or its first `limit` examples, in host memory: images, tokenized
  captions, labels. `single_object` keeps only images whose label names their one object."""
  source = dataset.source(split)
  examples = []
  for i in range(len(source)):
    example = source[i]
    if single_object and int(example.get("n_objects", 1)) != 1:
      continue
    examples.append(example)
    if limit is not None and len(examples) >= limit:
      break
  return {
      "image": np.stack([np.asarray(e["image"], np.uint8) for e in examples]),
      "text": dataset.tokenize([e["caption"] for e in examples]),
      "label": np.asarray([e["label"] for e in examples], np.int32),
      "held_out": np.asarray([e["held_out"] for e in examples], bool),
  }
