"""`scenes`: the generated multi-object benchmark (lang_image/data/scenes.py) as a data source.

Generated on first use under the data directory, in a directory named by the generator's
version (scenes_tfds.py), with a SentencePiece tokenizer trained on its clean train captions
and kept beside it. config.data.caption_noise makes that fraction of the training captions
noisy when they are read (`scenes.noisy_caption`): the stored data stays clean.
"""

from __future__ import annotations

from collections.abc import Iterator
import os

from lang_image.data import scenes
from lang_image.data import tokenizer as tokenizer_lib
from lang_image.data.sources.registry import SourceKind, SourceOptions, register
from lang_image.data.sources.shapes_source import ShapesSource

NAME = "scenes"


class ScenesSource(ShapesSource):
  """A split of the scenes dataset as a source of {"image", "caption", "key"}, its train
  captions made noisy at read time (`caption_noise`)."""

  def __init__(self, split, caption_noise: float = 0.0, name: str = NAME):
    super().__init__(split, name)
    self._noise = float(caption_noise)

  def __getitem__(self, i):
    record = super().__getitem__(i)
    record["caption"], _ = scenes.noisy_caption(int(i), str(record["caption"]), self._noise)
    return record


def prepared_builder(options: SourceOptions):
  """The dataset's tfds builder, generated under options.data_dir on first use."""
  # Imported here: TFDS is slow to import and only runs that use this dataset pay for it.
  from lang_image.data import scenes_tfds  # noqa: PLC0415
  return scenes_tfds.prepare(options.data_dir, options.variant)


def scenes_tokenizer(data_dir: str, variant: str = "default", vocab_size: int = 1000) -> str:
  """Path of the tokenizer kept in the prepared dataset's directory (trained on first use on
  the clean train captions), so that it is replaced with the data."""
  builder = prepared_builder(SourceOptions(data_dir=data_dir, variant=variant))
  path = os.path.join(os.fspath(builder.data_dir), f"tokenizer_{vocab_size}.model")
  if not os.path.exists(path):
    tokenizer_lib.train_sentencepiece(train_captions(variant), path, vocab_size)
  return path


def train_captions(variant: str) -> Iterator[str]:
  """The train split's clean captions, regenerated without rendering."""
  for index in range(scenes.SPLIT_SIZES[variant]["train"]):
    yield scenes.describe("train", index)["caption"]


def _open(spec: str, options: SourceOptions) -> ScenesSource:
  return ScenesSource(prepared_builder(options).as_data_source("train"), options.caption_noise)


register(SourceKind(
    NAME, NAME, _open, default_pp="decode|choose_caption|tokenize",
    tokenizer=lambda options, vocab_size: scenes_tokenizer(options.data_dir, options.variant,
                                                           vocab_size),
    builtin=True, caption_noise=True))
