"""The kinds of data a spec can name, each registered by its own module.

A spec is `SCHEME:REST` (`wds:/data/{00000..00099}.tar`, `csv:/data/train.csv`) or the bare
name of a dataset that lang_image builds itself (`shapes`). `kind_of(spec)` finds the kind,
`open_source(spec, options)` opens it. Nothing outside a kind's module special-cases it:
what differs between kinds (default preprocessing, a tokenizer that ships with the data) is
a field of its `SourceKind`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lang_image.data.sources.base import DataError, Source

# Preprocessing when config.data.pp is empty, for kinds that hold real photos: CLIP's mild
# random crop after decoding.
FILES_PP = "decode|random_resized_crop(scale=(0.9, 1.0))|choose_caption|tokenize"


@dataclasses.dataclass(frozen=True)
class SourceOptions:
  """What opening a source may need; each kind reads the fields it uses."""
  image_key: str = ""
  text_key: str = ""
  csv_separator: str = ","
  skip_bad_shards: bool = False
  tfds_data_dir: str | None = None
  # Where shard indexes are cached; empty: not cached.
  index_cache_dir: str | None = None
  # Where built-in datasets are generated and kept, and which size of them.
  data_dir: str = ""
  variant: str = "default"
  # Fraction of training captions replaced by noisy ones, for kinds that support it.
  caption_noise: float = 0.0


@dataclasses.dataclass(frozen=True)
class SourceKind:
  name: str  # The scheme before ':', or the whole spec of a built-in dataset.
  example: str
  open: Callable[[str, SourceOptions], Source]
  default_pp: str = FILES_PP
  # A built-in dataset's own tokenizer: (options, vocab_size) -> path of a sentencepiece
  # model. None: the tokenizer is trained on the sources' captions on first use.
  tokenizer: Callable[[SourceOptions, int], str] | None = None
  # True for a built-in dataset named by its bare name (no ':').
  builtin: bool = False
  # Whether the kind can make a fraction of its captions noisy (SourceOptions.caption_noise).
  caption_noise: bool = False


KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
  if kind.name in KINDS:
    raise ValueError(f"a data source kind '{kind.name}' is already registered.")
  KINDS[kind.name] = kind
  return kind


def describe_known() -> str:
  return "; ".join(f"{k.name} (e.g. {k.example})" for k in KINDS.values())


def kind_of(spec: str) -> SourceKind:
  """The registered kind of `spec`, or DataError with the known kinds."""
  spec = spec.strip()
  builtin = KINDS.get(spec)
  if builtin is not None and builtin.builtin:
    return builtin
  scheme, sep, _ = spec.partition(":")
  kind = KINDS.get(scheme) if sep else None
  if kind is None or kind.builtin:
    raise DataError(f"'{spec}' names no known data; write one of {describe_known()}.")
  return kind


def open_source(spec: str, options: SourceOptions | None = None, **fields) -> Source:
  """Opens `spec` (indexes built or read from the cache; files that cannot be read raise
  DataError now rather than later). Options come as a SourceOptions or as its fields."""
  options = dataclasses.replace(options or SourceOptions(), **fields)
  return kind_of(spec).open(spec.strip(), options)
