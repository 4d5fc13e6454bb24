"""`shapes`: the embedded generated dataset (lang_image/data/shapes.py) as a data source.

Generated and kept under the data directory on first use (a tfds dataset, shapes_tfds.py),
with a SentencePiece tokenizer trained on its train captions and kept beside it. Its images
are stored at the small model's size, so its default preprocessing only decodes them.
"""

from __future__ import annotations

from collections.abc import Iterator
import os

from lang_image import progress, storage
from lang_image.data import tokenizer as tokenizer_lib
from lang_image.data.sources.registry import SourceKind, SourceOptions, register

NAME = "shapes"


class ShapesSource:
  """A split of the embedded dataset as a source of {"image", "caption", "key"}."""

  def __init__(self, split, name: str = NAME):
    self.name = name
    self._split = split
    self.skipped_shards = []

  def __len__(self):
    return len(self._split)

  def __getitem__(self, i):
    example = self._split[i]
    caption = example["caption"]
    return {"image": example["image"], "key": f"{self.name} #{i}",
            "caption": caption.decode("utf-8") if isinstance(caption, bytes) else caption}


def prepared_builder(options: SourceOptions):
  """The dataset's tfds builder, generated into options.data_dir on first use."""
  # Imported here: TFDS is slow to import and only runs that use this dataset pay for it.
  from lang_image.data import shapes_tfds  # noqa: PLC0415
  return shapes_tfds.prepare(options.data_dir, options.variant)


def shapes_tokenizer(data_dir: str, variant: str = "default", vocab_size: int = 1000) -> str:
  """Path of the tokenizer kept with the prepared dataset: trained on first use from the train
  split's captions and stored in the dataset's own directory, so that it is replaced along
  with the data."""
  builder = prepared_builder(SourceOptions(data_dir=data_dir, variant=variant))
  path = storage.join(os.fspath(builder.data_dir), f"tokenizer_{vocab_size}.model")
  if not storage.exists(path):
    with progress.phase(f"Training the tokenizer (vocabulary {vocab_size}) on the train "
                        "captions (one-off)"):
      tokenizer_lib.train_sentencepiece(train_captions(variant), path, vocab_size)
  return path


def train_captions(variant: str) -> Iterator[str]:
  """The train split's captions. Regenerating them skips rendering, so it is much faster than
  reading and decoding the stored examples; the tests check that the two agree."""
  from lang_image.data import shapes  # noqa: PLC0415
  for index in range(shapes.SPLIT_SIZES[variant]["train"]):
    yield shapes.describe("train", index)["caption"]


def _open(spec: str, options: SourceOptions) -> ShapesSource:
  return ShapesSource(prepared_builder(options).as_data_source("train"))


register(SourceKind(
    NAME, NAME, _open, default_pp="decode|choose_caption|tokenize",
    tokenizer=lambda options, vocab_size: shapes_tokenizer(options.data_dir, options.variant,
                                                           vocab_size),
    builtin=True))
