"""Input data: the configured sources, their tokenizer and preprocessing (`open_dataset`).

`config.data.name` names the training data:

    shapes                                   the embedded dataset (generated on first use)
    wds:/data/laion/{00000..01023}.tar       webdataset shards (img2dataset output)
    csv:/data/cc3m/train.csv                 open_clip's CSV: `filepath`, `title` columns
    jsonl:/data/pairs.jsonl                  one JSON object per line, same keys
    tfds:coco_captions/2017:train            a tfds dataset prepared on disk
    0.7*wds:/a/{0000..0099}.tar;0.3*csv:/b.csv   a weighted mixture (weights are normalised)

The stream that reads them is `stream.TrainStream`; the sources are `sources.open_source`.
When config.data.tokenizer is empty, a SentencePiece model is trained on the sources'
captions on first use and kept in the data directory (`tokenizer.for_sources`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re

from lang_image import storage
from lang_image.data import ops, shapes, sources as sources_lib
from lang_image.data import preprocess as preprocess_lib
from lang_image.data import tokenizer as tokenizer_lib
from lang_image.data.sources import shapes_source
from lang_image import progress
from lang_image.errors import ConfigError
from lang_image.data.stream import TrainStream, to_global  # noqa: F401  (the public names)

_WEIGHT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*(.+)$")



def parse_mixture(name: str) -> list[tuple[str, float]]:
  """'0.7*wds:/a.tar;0.3*csv:/b.csv' -> [('wds:/a.tar', 0.7), ('csv:/b.csv', 0.3)]; a single
  spec has weight 1. Weights must be positive; they are normalised by the mixture."""
  parts = [p.strip() for p in name.split(";") if p.strip()]
  if not parts:
    raise ConfigError("config.data.name is empty; give 'shapes' or a source such as "
                      "wds:/data/{00000..00009}.tar.")
  mixture = []
  for part in parts:
    match = _WEIGHT.match(part)
    spec, weight = (match.group(2).strip(), float(match.group(1))) if match else (part, 1.0)
    if weight <= 0:
      raise ConfigError(f"mixture weight {weight} of '{spec}' is not positive; give every "
                        "source a weight > 0, as in 0.7*wds:/a.tar;0.3*csv:/b.csv.")
    mixture.append((spec, weight))
  return mixture


def default_pp(name: str) -> str:
  """Preprocessing when config.data.pp is empty: the sources' kinds' own default when they
  agree, else the one for real photos."""
  pps = {sources_lib.kind_of(spec).default_pp for spec, _ in parse_mixture(name)}
  return pps.pop() if len(pps) == 1 else sources_lib.registry.FILES_PP


def default_data_dir() -> str:
  return os.environ.get("LANG_IMAGE_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "lang_image"))


def data_dir(data_cfg) -> str:
  """config.data.data_dir, or the default; created if missing."""
  path = data_cfg.data_dir or default_data_dir()
  storage.makedirs(path)
  return path


def source_options(data_cfg) -> sources_lib.SourceOptions:
  root = data_dir(data_cfg)
  return sources_lib.SourceOptions(
      image_key=data_cfg.image_key, text_key=data_cfg.text_key,
      csv_separator=data_cfg.csv_separator, skip_bad_shards=data_cfg.skip_bad_shards,
      tfds_data_dir=data_cfg.tfds_data_dir or None,
      index_cache_dir=storage.join(root, "index"), data_dir=root, variant=data_cfg.variant,
      caption_noise=float(data_cfg.get("caption_noise", 0.0)))


@dataclasses.dataclass
class Dataset:
  """The training data (sources, weights, preprocessing) and the tokenizer that goes with it,
  plus the embedded dataset for the default evaluation."""
  tokenizer: object
  max_len: int
  # Zero-shot classification on the embedded data: class names and prompt templates.
  classes: list
  templates: list
  train_sources: list
  train_weights: list
  preprocess: preprocess_lib.Preprocess
  data_cfg: object = None

  @functools.cached_property
  def builder(self):
    """The embedded dataset's tfds builder (prepared on first use: its eval splits serve the
    default evaluation whatever the training data)."""
    return shapes_source.prepared_builder(source_options(self.data_cfg))

  def source(self, split: str):
    """A split of the embedded dataset (random access)."""
    return self.builder.as_data_source(split)

  def tokenize(self, captions):
    texts = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
    return self.tokenizer.encode(texts, self.max_len)


def open_sources(data_cfg) -> tuple[list, list]:
  """The configured sources (opened: indexes built, files checked) and their weights."""
  mixture = parse_mixture(data_cfg.name)
  options = source_options(data_cfg)
  return ([sources_lib.open_source(spec, options) for spec, _ in mixture],
          [w for _, w in mixture])


def open_tokenizer(data_cfg, train_sources) -> object:
  """config.data.tokenizer, or the one kept for these sources (trained on first use)."""
  if data_cfg.tokenizer:
    if not storage.exists(data_cfg.tokenizer):
      raise ConfigError(f"tokenizer '{data_cfg.tokenizer}' does not exist; build one with "
                        "python -m lang_image.train_tokenizer --source=... --output=PATH, or "
                        "leave config.data.tokenizer empty to train one on first use.")
    return tokenizer_lib.load(data_cfg.tokenizer)
  mixture = parse_mixture(data_cfg.name)
  own = sources_lib.kind_of(mixture[0][0]).tokenizer if len(mixture) == 1 else None
  if own is not None:  # A built-in dataset's tokenizer, kept with it.
    return tokenizer_lib.load(own(source_options(data_cfg), data_cfg.vocab_size))
  key = hashlib.sha1(repr([s.name for s in train_sources]).encode()).hexdigest()[:12]
  path = storage.join(data_dir(data_cfg), "tokenizers", f"{key}_{data_cfg.vocab_size}.model")
  if not storage.exists(path):
    with progress.phase(f"Training a tokenizer (vocabulary {data_cfg.vocab_size}) on up to "
                        f"{data_cfg.tokenizer_samples} captions (one-off, kept in {path})"):
      tokenizer_lib.train_on_sources(train_sources, path, data_cfg.vocab_size,
                                     data_cfg.tokenizer_samples)
  return tokenizer_lib.load(path)


def open_dataset(data_cfg, max_len: int, image_size: int = 64) -> Dataset:
  """Opens the configured sources, their tokenizer and the preprocessing."""
  train_sources, weights = open_sources(data_cfg)
  tokenizer = open_tokenizer(data_cfg, train_sources)
  pp = data_cfg.pp or default_pp(data_cfg.name)
  preprocess = preprocess_lib.Preprocess(pp, ops.Context(image_size=image_size, max_len=max_len,
                                              tokenizer=tokenizer))
  return Dataset(tokenizer, max_len, list(shapes.CLASSES), list(shapes.PROMPT_TEMPLATES),
                 train_sources, weights, preprocess, data_cfg)


def open_for(config) -> Dataset:
  """`open_dataset` for a run's config (its data, text length and image size)."""
  return open_dataset(config.data, config.model.max_len, config.model.image_size)
