"""`tfds:` sources: a tfds dataset already prepared on disk.

    tfds:NAME[/CONFIG][@VERSION]:SPLIT      e.g. tfds:coco_captions/2017:train,
                                            tfds:my_set@1.0.0:train[:90%]

SPLIT may use tfds slicing ('train[:1000]', 'train[10%:]'). Nothing is downloaded or
generated: the dataset is opened from its files in the data directory (tfds' default when
none is given), without the code that built it. Records are read at random: through
`as_data_source` when the files are array_record, and for tfrecord files through an index of
where each record lies, built by walking the record headers (kept in the index cache
directory when one is given).

image_key and text_key are feature paths, '/' walking into nested features (default 'image'
and 'caption'; coco_captions has 'image' and 'captions/text', a list of captions). Image
features come back encoded (tfds does not decode them), so that the preprocessing decodes
them and reports an unreadable one; an image stored as pixels comes back as the array.
"""

from __future__ import annotations

import os
import struct

from absl import logging
import numpy as np

from lang_image.data.sources.registry import SourceKind, SourceOptions, register
from lang_image.data.sources.base import (BadSample, DataError, IndexCache, Source, caption_text,
                                          check_index)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")



def _tfds():
  """tensorflow_datasets and two of its modules, imported on first use: importing them takes
  seconds, which only runs that read tfds data should pay."""
  import tensorflow_datasets as tfds  # noqa: PLC0415
  from tensorflow_datasets.core import file_adapters, read_only_builder  # noqa: PLC0415
  return tfds, file_adapters, read_only_builder

SCHEME = "tfds"
DEFAULT_IMAGE_KEY = "image"
DEFAULT_TEXT_KEY = "caption"
_EXAMPLE = "tfds:coco_captions/2017:train"


def parse_spec(spec: str) -> tuple[str, str]:
  """'tfds:NAME[/CONFIG][@VERSION]:SPLIT' -> (tfds' own name 'NAME[/CONFIG][:VERSION]',
  SPLIT)."""
  body = spec.partition(":")[2]
  head, sep, split = body.partition(":")
  head, _, version = head.strip().partition("@")
  if not sep or not split.strip() or not head:
    raise DataError(f"tfds spec '{spec}' does not parse; write it as "
                    f"tfds:NAME[/CONFIG][@VERSION]:SPLIT, e.g. {_EXAMPLE}.")
  return head + (f":{version.strip()}" if version.strip() else ""), split.strip()


def feature_paths(features) -> dict[str, object]:
  """The leaf features by path: nested dicts joined with '/', sequences seen through."""
  paths = {}
  tfds = _tfds()[0]

  def walk(feature, prefix):
    if isinstance(feature, tfds.features.FeaturesDict):
      for key, sub in feature.items():
        walk(sub, f"{prefix}{key}/")
    elif isinstance(feature, tfds.features.Sequence):
      walk(feature.feature, prefix)
    else:
      paths[prefix.rstrip("/")] = feature

  walk(features, "")
  return paths


def _skip_image_decoding(feature):
  """Decoders (the features' nesting) that leave every Image feature encoded; None where a
  feature has no image."""
  tfds = _tfds()[0]
  if isinstance(feature, tfds.features.Image):
    return tfds.decode.SkipDecoding()
  if isinstance(feature, tfds.features.FeaturesDict):
    decoders = {k: d for k, sub in feature.items()
                if (d := _skip_image_decoding(sub)) is not None}
    return decoders or None
  if isinstance(feature, tfds.features.Sequence):
    return _skip_image_decoding(feature.feature)
  return None


def index_tfrecord(path: str) -> dict:
  """{"offsets", "sizes": int64 [n]}: where the data of each record of a TFRecord file lies.

  A record is framed as uint64 length, uint32 CRC of the length, the data, uint32 CRC of the
  data (little-endian); only the length fields are read.
  """
  offsets, sizes = [], []
  fd = os.open(path, os.O_RDONLY)
  try:
    file_size = os.fstat(fd).st_size
    position = 0
    while position < file_size:
      header = os.pread(fd, 8, position)
      if len(header) < 8:
        raise DataError(f"{path} is truncated (a record header at byte {position} is "
                        "incomplete); prepare the dataset again.")
      (length,) = struct.unpack("<Q", header)
      start, position = position + 12, position + 12 + length + 4
      if position > file_size:
        raise DataError(f"{path} is truncated (the record at byte {start - 12} ends past the "
                        "end of the file); prepare the dataset again.")
      offsets.append(start)
      sizes.append(length)
  finally:
    os.close(fd)
  return {"offsets": np.asarray(offsets, np.int64), "sizes": np.asarray(sizes, np.int64)}


class TfdsSource(Source):
  """Random access to one split of a prepared tfds dataset (see the module docstring)."""

  def __init__(self, spec: str, *, image_key: str = "", text_key: str = "",
               data_dir: str | None = None, index_cache_dir: str | None = None):
    self.name = spec
    self.skipped_shards = []
    self.dataset, self.split = parse_spec(spec)
    self.image_key = image_key or DEFAULT_IMAGE_KEY
    self.text_key = text_key or DEFAULT_TEXT_KEY
    tfds, file_adapters, read_only_builder = _tfds()
    where = data_dir or "tfds' default data directory"
    try:
      builder = read_only_builder.builder_from_files(self.dataset, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, FileNotFoundError, ValueError) as e:
      build = f"tfds build {self.dataset.partition(':')[0]}" + (
          f" --data_dir={data_dir}" if data_dir else "")
      raise DataError(f"tfds dataset '{self.dataset}' is not prepared in {where} "
                      f"({type(e).__name__}); prepare it once with `{build}` (this needs the "
                      "network) or point --config.data.tfds_data_dir at the directory that "
                      "holds it.") from None
    info = builder.info
    self._data_dir = builder.data_dir
    paths = feature_paths(info.features)
    for what, key in (("image_key", self.image_key), ("text_key", self.text_key)):
      if key not in paths:
        raise DataError(f"tfds dataset '{self.dataset}' has no feature '{key}' (its features "
                        f"are {sorted(paths)}); set --config.data.{what} to one of them.")
    try:
      split_info = info.splits[self.split]
    except (KeyError, ValueError, AssertionError) as e:
      raise DataError(f"tfds dataset '{self.dataset}' has no split '{self.split}' ({e}); its "
                      f"splits are {sorted(info.splits)}, sliceable as in train[:90%].") from None
    if not split_info.num_examples:
      raise DataError(f"split '{self.split}' of tfds dataset '{self.dataset}' is empty; check "
                      "the split and its slice.")
    decoders = _skip_image_decoding(info.features)
    formats = [info.file_format, *getattr(info, "alternative_file_formats", [])]
    self._features = info.features
    self._decoders = decoders
    if file_adapters.FileFormat.ARRAY_RECORD in formats:
      self.file_format = "array_record"
      # The data source opens its files lazily: check them now rather than at the first read.
      for instruction in split_info.file_instructions:
        path = self._file_path(instruction)
        try:
          os.close(os.open(path, os.O_RDONLY))
        except OSError as e:
          raise DataError(f"cannot open {path} of tfds dataset '{self.dataset}' "
                          f"({e.strerror or e}); prepare the dataset again.") from None
      try:
        self._data = builder.as_data_source(self.split, decoders=decoders,
                                            file_format=file_adapters.FileFormat.ARRAY_RECORD)
      except (OSError, ValueError) as e:
        raise DataError(f"cannot open the array_record files of tfds dataset '{self.dataset}' "
                        f"in {builder.data_dir} ({e}); prepare the dataset again.") from None
      self._length = len(self._data)
    elif file_adapters.FileFormat.TFRECORD in formats:
      self.file_format = "tfrecord"
      self._data = None
      self._index_tfrecords(split_info, IndexCache(index_cache_dir))
    else:
      stored = getattr(info.file_format, "value", info.file_format)
      raise DataError(f"tfds dataset '{self.dataset}' is stored as {stored}, "
                      "which cannot be read at random; prepare it as array_record "
                      f"(`tfds build ... --file_format=array_record`) or tfrecord.")
    logging.info("Opened %s (%s): %d examples.", spec, self.file_format, len(self))

  def _file_path(self, instruction) -> str:
    path = os.fspath(instruction.filename)
    return path if os.path.isabs(path) else os.path.join(os.fspath(self._data_dir), path)

  def _index_tfrecords(self, split_info, cache: IndexCache):
    self._files, self._offsets, self._sizes, ends = [], [], [], []
    total = 0
    for instruction in split_info.file_instructions:
      path = self._file_path(instruction)
      try:
        index = cache.get(path, "tfrecord", index_tfrecord)
      except OSError as e:
        raise DataError(f"cannot read {path} of tfds dataset '{self.dataset}' "
                        f"({e.strerror or e}); prepare the dataset again.") from None
      expected = instruction.examples_in_shard
      if len(index["offsets"]) != expected:
        raise DataError(f"{path} holds {len(index['offsets'])} records where the dataset "
                        f"info says {expected}; prepare the dataset again.")
      take = instruction.take if instruction.take >= 0 else expected - instruction.skip
      rows = slice(instruction.skip, instruction.skip + take)
      self._files.append(path)
      self._offsets.append(index["offsets"][rows])
      self._sizes.append(index["sizes"][rows])
      total += len(self._offsets[-1])
      ends.append(total)
    self._ends = np.asarray(ends, np.int64)
    self._length = total

  def __len__(self) -> int:
    return self._length

  def _example(self, i: int) -> dict:
    if self._data is not None:
      return self._data[i]
    f = int(np.searchsorted(self._ends, i, side="right"))
    row = i - (int(self._ends[f - 1]) if f else 0)
    offset, size = int(self._offsets[f][row]), int(self._sizes[f][row])
    fd = os.open(self._files[f], os.O_RDONLY)
    try:
      serialized = os.pread(fd, size, offset)
    finally:
      os.close(fd)
    return self._features.deserialize_example_np(serialized, decoders=self._decoders)

  def __getitem__(self, index) -> dict:
    i = check_index(index, len(self))
    example = self._example(i)
    caption = caption_text(_lookup(example, self.text_key))
    image = _lookup(example, self.image_key)
    if isinstance(image, np.ndarray) and image.dtype == object and image.ndim == 0:
      image = image.item()
    if isinstance(image, (bytes, np.bytes_)):
      image = bytes(image)
      if not image:
        raise BadSample("image_missing", f"'{self.image_key}' is empty")
    return {"image": image, "caption": caption, "key": f"{self.split}/{i}"}


def _lookup(example, path: str):
  for part in path.split("/"):
    example = example[part]
  return example


def _open(spec: str, options: SourceOptions) -> TfdsSource:
  return TfdsSource(spec, image_key=options.image_key, text_key=options.text_key,
                    data_dir=options.tfds_data_dir, index_cache_dir=options.index_cache_dir)


register(SourceKind(SCHEME, _EXAMPLE, _open))
