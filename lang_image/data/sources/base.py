"""What every data source shares: the record format, sample faults, file errors, index caches.

A source is a random-access sequence of raw records

    {"image": bytes | uint8 [H, W, 3], "caption": str | list[str], "key": str}

(webdataset records add "json", the parsed KEY.json sidecar, when the sample has one).
Images stay encoded: the preprocessing decodes them, and reports an undecodable one itself.
A sample the source cannot turn into a record raises `BadSample`, which the stream counts
and passes over; a file that cannot be opened at all raises `DataError` when the source is
opened, before training starts.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import posixpath

from absl import logging
import numpy as np

from lang_image import storage
from lang_image.errors import ConfigError

# Why a sample is passed over; the stream reports them as data/skipped/<reason>.
REASONS = ("image_missing", "image_unreadable", "caption_missing", "caption_empty",
           "caption_not_utf8", "json_invalid")


class BadSample(Exception):
  """One sample cannot be used; `reason` is one of REASONS, `detail` says more."""

  def __init__(self, reason: str, detail: str = ""):
    assert reason in REASONS, f"unknown reason {reason!r}; known: {REASONS}"
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason
    self.detail = detail


class DataError(ConfigError):
  """A file or shard that cannot be opened at all, or a spec that does not parse. The message
  is one sentence naming the path or problem and the fix."""


class Source(abc.ABC):
  """Random access to the raw records of one spec (see the module docstring).

  `__getitem__` may be called from several threads at once: sources read with `os.pread` or
  open a file per call, never through a shared file position.
  """

  name: str
  # Shards or files passed over when opened with skip_bad_shards.
  skipped_shards: list[str]

  @abc.abstractmethod
  def __len__(self) -> int:
    ...

  @abc.abstractmethod
  def __getitem__(self, index: int) -> dict:
    ...

  def sample_name(self, index: int) -> str:
    """Where sample `index` lies, for a log line about it (a source spread over several files
    names the file)."""
    return f"{self.name} #{index}"

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.name!r}, {len(self)} samples)"


def check_index(index, length: int) -> int:
  """`index` as a Python int in [0, length); negative ones count from the end."""
  i = int(index)
  if i < 0:
    i += length
  if not 0 <= i < length:
    raise IndexError(f"index {index} is out of range for a source of {length} samples")
  return i


def caption_text(value) -> str | list[str]:
  """A caption field as text, by the rules every source shares.

  bytes must be UTF-8 and str must encode to UTF-8 (text read with errors='surrogateescape'
  keeps undecodable bytes as lone surrogates) else caption_not_utf8; None is
  caption_missing; text is stripped, and empty or whitespace-only text is caption_empty. A
  list (or array) of captions loses its empty entries and is caption_empty if none is left.
  """
  if value is None:
    raise BadSample("caption_missing")
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    texts = [t for t in (_one_caption(v) for v in value) if t]
    if not texts:
      raise BadSample("caption_empty", f"all {len(value)} captions are empty")
    return texts
  text = _one_caption(value)
  if not text:
    raise BadSample("caption_empty")
  return text


def _one_caption(value) -> str:
  if isinstance(value, (bytes, bytearray, memoryview)):
    try:
      value = bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
      raise BadSample("caption_not_utf8", f"invalid UTF-8 at byte {e.start}") from None
  elif isinstance(value, str):
    try:
      value.encode("utf-8")
    except UnicodeEncodeError as e:
      raise BadSample("caption_not_utf8", f"invalid UTF-8 at character {e.start}") from None
  else:
    raise BadSample("caption_missing", f"the caption is a {type(value).__name__}, not text")
  return value.strip()


def read_file(path: str, offset: int = 0, size: int = -1) -> bytes:
  """`size` bytes of `path` from `offset` (all of it by default), read with pread on a file
  opened for this call alone."""
  if storage.is_remote(path):
    if size < 0:
      size = storage.size_and_mtime(path)[0] - offset
    with storage.ranged_reader(path) as read:
      data = read(offset, size)
    if len(data) != size:
      raise OSError(f"{path} ends before byte {offset + size}")
    return data
  fd = os.open(path, os.O_RDONLY)
  try:
    if size < 0:
      size = os.fstat(fd).st_size - offset
    chunks = []
    while size > 0:
      chunk = os.pread(fd, size, offset)
      if not chunk:
        raise OSError(f"{path} ends before byte {offset + size}")
      chunks.append(chunk)
      offset += len(chunk)
      size -= len(chunk)
    return b"".join(chunks)
  finally:
    os.close(fd)


# Bumped when the layout of a cached index changes, so that old files are not read.
_INDEX_VERSION = 1


class IndexCache:
  """Indexes of files (dicts of numpy arrays) kept as .npz under `directory` (local or a URL,
  lang_image.storage), keyed by the file's absolute path, size and modification time, so that
  a changed file is re-indexed. With `directory` None nothing is kept. Failing to write only
  logs a warning."""

  def __init__(self, directory: str | None):
    self.directory = directory
    self._warned = False

  def _path(self, path: str, kind: str) -> str:
    size, mtime = storage.size_and_mtime(path)
    ident = f"{kind}\0{storage.join(path)}\0{size}\0{mtime}\0{_INDEX_VERSION}"
    digest = hashlib.sha1(ident.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return storage.join(self.directory, f"{posixpath.basename(path)}.index-{digest}.npz")

  def get(self, path: str, kind: str, build) -> dict:
    """The cached index of `path`, or `build(path)` (then cached). Errors of os.stat and of
    `build` propagate."""
    if self.directory is None:
      return build(path)
    cached = self._path(path, kind)
    try:
      with np.load(io.BytesIO(storage.read_bytes(cached)), allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, KeyError, EOFError):
      pass  # Not cached yet, or an unreadable cache file: index again.
    index = build(path)
    try:
      buffer = io.BytesIO()
      np.savez(buffer, **index)
      storage.write_bytes(cached, buffer.getvalue())
    except OSError as e:
      if not self._warned:
        logging.warning("Cannot keep indexes in %s (%s); files are indexed on every open.",
                        self.directory, e)
        self._warned = True
    return index
