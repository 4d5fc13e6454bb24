"""`wds:` sources: webdataset tar shards, as img2dataset writes them.

    wds:/data/laion/{00000..01023}.tar
    wds:/data/a/*.tar::/data/b/{000..009}.tar

Patterns are separated by '::' (a comma would split the config argument string); each may
hold numeric brace ranges, which keep their zero padding, and glob wildcards, expanded in
sorted order. A shard holds members KEY.EXT; the members sharing a KEY (the member path up to
the first '.' of its file name) form one sample, and EXT is compared in lower case.

Opening a source walks every shard's tar headers once (seeking over the member data) and
records where each member of each sample lies; with an index cache directory that index is
kept per shard, so a later open reads no tar header. Samples are numbered shard by shard,
in the order of the patterns and of their expansion.
"""

from __future__ import annotations

from concurrent import futures
import glob
import itertools
import json
import os
import posixpath
import re
import tarfile

from absl import logging
import numpy as np

from lang_image import storage
from lang_image.data.sources.registry import SourceKind, SourceOptions, register
from lang_image.data.sources.base import (BadSample, DataError, IndexCache, Source, caption_text,
                                          check_index)

SCHEME = "wds"
DEFAULT_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
DEFAULT_TEXT_KEY = "txt"
JSON_EXT = "json"
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_COMMA_BRACES = re.compile(r"\{[^{}]*,[^{}]*\}")
_SKIP_HINT = "--config.data.skip_bad_shards=True"


def expand_patterns(patterns: str) -> list[str]:
  """Shard paths of '::'-separated patterns: brace ranges {a..b} (zero padding kept), then
  glob wildcards (sorted). Paths listed twice are kept once, at their first place. A pattern
  that matches no existing file raises DataError; a brace range with gaps keeps the missing
  paths (they are reported as bad shards when opened)."""
  paths = []
  for pattern in patterns.split("::"):
    pattern = os.path.expanduser(pattern.strip())
    if not pattern:
      continue
    if _COMMA_BRACES.search(pattern):
      raise DataError(f"shard pattern '{pattern}' has a comma list in braces, which config "
                      "strings cannot carry; write the alternatives as separate patterns "
                      "joined by '::', e.g. wds:/data/a/{0000..0009}.tar::/data/b/*.tar.")
    expanded = []
    for path in _expand_ranges(pattern):
      if any(c in path for c in "*?["):
        expanded.extend(storage.glob_url(path) if storage.is_remote(path)
                        else sorted(glob.glob(path)))
      else:
        expanded.append(path)
    if not any(storage.exists(p) for p in expanded):
      raise DataError(f"shard pattern '{pattern}' matches no file; check the path, or "
                      "quote the spec so the shell does not expand it.")
    paths.extend(expanded)
  if not paths:
    raise DataError(f"'{patterns}' names no shard; give a path such as "
                    "wds:/data/laion/{00000..01023}.tar.")
  return list(dict.fromkeys(paths))


def _expand_ranges(pattern: str) -> list[str]:
  parts = _RANGE.split(pattern)
  # parts: text, start, stop, text, start, stop, ..., text.
  choices = []
  for i in range(0, len(parts) - 1, 3):
    start, stop = parts[i + 1], parts[i + 2]
    if int(start) > int(stop):
      raise DataError(f"brace range {{{start}..{stop}}} in '{pattern}' runs backwards; write "
                      "the smaller number first.")
    width = max(len(start), len(stop)) if start.startswith("0") and len(start) > 1 else 0
    choices.append([parts[i]])
    choices.append([str(n).zfill(width) for n in range(int(start), int(stop) + 1)])
  choices.append([parts[-1]])
  return ["".join(combo) for combo in itertools.product(*choices)]


class _BadShard(Exception):
  """A shard that is not a readable tar file; the message says why."""


def index_tar(path: str) -> dict:
  """Where each member of each sample of the tar file `path` lies, from its headers alone.

  Returns {"keys": bytes [n] (sample keys, UTF-8), "exts": str [e] (the extensions present),
  "offsets", "sizes": int64 [n, e] (-1 where a sample has no member of that extension)}, the
  samples in the order of their first member.
  """
  file_size = storage.size_and_mtime(path)[0]
  samples: dict[str, dict[str, tuple[int, int]]] = {}
  exts: dict[str, int] = {}
  try:
    with storage.path(path).open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
      for info in tar:
        if not info.isfile():
          continue
        directory, name = posixpath.split(info.name)
        dot = name.find(".")
        if dot <= 0:  # No extension, or a hidden file such as '._x.jpg'.
          continue
        key = posixpath.join(directory, name[:dot])
        ext = name[dot + 1:].lower()
        if info.offset_data + info.size > file_size:
          raise _BadShard(f"truncated: member {info.name} ends at byte "
                          f"{info.offset_data + info.size} of {file_size}")
        exts.setdefault(ext, len(exts))
        samples.setdefault(key, {}).setdefault(ext, (info.offset_data, info.size))
      # tarfile ends the walk quietly at a truncated or invalid header after the first one;
      # a regular end is a block of zeros (or the end of the file).
      tar.fileobj.seek(tar.offset)
      if tar.fileobj.read(tarfile.BLOCKSIZE).strip(b"\0"):
        raise _BadShard(f"truncated or corrupt: no valid tar header at byte {tar.offset}")
  except (tarfile.TarError, EOFError) as e:
    raise _BadShard(f"not a readable uncompressed tar file: {e}") from None
  offsets = np.full((len(samples), len(exts)), -1, np.int64)
  sizes = np.full((len(samples), len(exts)), -1, np.int64)
  for row, members in enumerate(samples.values()):
    for ext, (offset, size) in members.items():
      offsets[row, exts[ext]] = offset
      sizes[row, exts[ext]] = size
  keys = [k.encode("utf-8", "surrogateescape") for k in samples]
  return {"keys": np.array(keys, dtype=bytes) if keys else np.zeros(0, "S1"),
          "exts": np.array(list(exts), dtype=str) if exts else np.zeros(0, "U1"),
          "offsets": offsets, "sizes": sizes}


class _Shard:
  """One shard's index plus which of its extension columns the source reads."""

  def __init__(self, path: str, index: dict, image_exts, text_keys):
    self.path = path
    self.base = os.path.basename(path)
    self.keys = index["keys"]
    self.offsets = index["offsets"]
    self.sizes = index["sizes"]
    columns = {str(ext): i for i, ext in enumerate(index["exts"])}
    self.image_cols = [columns[e] for e in image_exts if e in columns]
    self.json_col = columns.get(JSON_EXT, -1)
    # (column, None) for a member, (-1, field) for a field of the JSON sidecar.
    self.text_cols = []
    for text_key in text_keys:
      if text_key.startswith("json:"):
        self.text_cols.append((-1, text_key[len("json:"):]))
      elif text_key in columns:
        self.text_cols.append((columns[text_key], None))

  def __len__(self):
    return len(self.keys)


class WebDatasetSource(Source):
  """Random access to the samples of webdataset shards (see the module docstring).

  image_key: ';'-separated extensions, the first present is the image (default
  jpg;jpeg;png;webp). text_key: ';'-separated extensions or 'json:FIELD' (a field of the
  KEY.json sidecar), the first present is the caption (default txt). Records carry the parsed
  sidecar as "json" when the sample has one.
  """

  def __init__(self, spec: str, *, image_key: str = "", text_key: str = "",
               skip_bad_shards: bool = False, index_cache_dir: str | None = None):
    self.name = spec
    self.skipped_shards = []
    self.image_exts = _alternatives(image_key) or DEFAULT_IMAGE_EXTS
    self.text_keys = _alternatives(text_key) or (DEFAULT_TEXT_KEY,)
    paths = expand_patterns(spec.partition(":")[2])
    cache = IndexCache(index_cache_dir)
    workers = min(32, len(paths))
    with futures.ThreadPoolExecutor(workers) as pool:
      results = list(pool.map(lambda p: _index_or_problem(p, cache), paths))
    bad = [(p, problem) for p, (_, problem) in zip(paths, results) if problem]
    if bad and not skip_bad_shards:
      path, problem = bad[0]
      others = len(bad) - 1
      more = f" (nor can {others} other shard{'s' if others > 1 else ''})" if others else ""
      raise DataError(f"shard {path} cannot be read{more}: {problem}; repair or remove it, or "
                      f"pass {_SKIP_HINT} to skip unreadable shards with a warning.")
    for path, problem in bad:
      logging.warning("Skipping shard %s of %s: %s.", path, spec, problem)
      self.skipped_shards.append(path)
    self._shards = [_Shard(p, index, self.image_exts, self.text_keys)
                    for p, (index, problem) in zip(paths, results) if not problem]
    if not self._shards:
      path, problem = bad[0]
      raise DataError(f"none of the {len(paths)} shards of '{spec}' can be read (the first, "
                      f"{path}: {problem}); check the paths and the files.")
    self._ends = np.cumsum([len(s) for s in self._shards])
    if not len(self):
      raise DataError(f"the {len(self._shards)} shards of '{spec}' hold no members named "
                      "KEY.EXT; check that they are webdataset shards.")
    logging.info("Opened %s: %d samples in %d shards.", spec, len(self), len(self._shards))

  def __len__(self) -> int:
    return int(self._ends[-1])

  @property
  def shards(self) -> list[str]:
    """The paths of the shards read, in sample order."""
    return [s.path for s in self._shards]

  def _locate(self, index) -> tuple[_Shard, int]:
    i = check_index(index, len(self))
    s = int(np.searchsorted(self._ends, i, side="right"))
    return self._shards[s], i - (int(self._ends[s - 1]) if s else 0)

  def sample_name(self, index: int) -> str:
    shard, row = self._locate(index)
    return f"{shard.path} #{row} (key {shard.keys[row].decode('utf-8', 'replace')})"

  def __getitem__(self, index) -> dict:
    shard, row = self._locate(index)
    key = f"{shard.base}/{shard.keys[row].decode('utf-8', 'replace')}"
    offsets, sizes = shard.offsets[row], shard.sizes[row]
    image_col = next((c for c in shard.image_cols if offsets[c] >= 0), -1)
    if image_col < 0:
      raise BadSample("image_missing", f"no member with extension {'/'.join(self.image_exts)}")
    with storage.ranged_reader(shard.path) as read_range:
      read = lambda col: _read_member(read_range, int(offsets[col]), int(sizes[col]))
      meta = None
      if shard.json_col >= 0 and offsets[shard.json_col] >= 0:
        meta = _parse_json(read(shard.json_col))
      caption = None
      for col, field in shard.text_cols:
        if field is None and offsets[col] >= 0:
          caption = read(col)
          break
        if field is not None and meta is not None and meta.get(field) is not None:
          caption = meta[field]
          break
      record = {"image": read(image_col), "caption": caption_text(caption), "key": key}
    if meta is not None:
      record["json"] = meta
    return record


def _alternatives(key: str) -> tuple[str, ...]:
  """'jpg;.PNG;json:Caption' -> ('jpg', 'png', 'json:Caption'): extensions in lower case,
  sidecar field names as given."""
  parts = (p.strip().lstrip(".") for p in key.split(";"))
  return tuple(p if p.startswith("json:") else p.lower() for p in parts if p)


def _index_or_problem(path: str, cache: IndexCache):
  """(index, None) for a readable shard, (None, why not) for another."""
  try:
    return cache.get(path, "tar", index_tar), None
  except _BadShard as e:
    return None, str(e)
  except OSError as e:
    return None, str(e.strerror or e)


def _read_member(read_range, offset: int, size: int) -> bytes:
  data = read_range(offset, size)
  if len(data) != size:
    raise OSError(f"shard ends inside a member (wanted {size} bytes at {offset})")
  return data


def _parse_json(raw: bytes) -> dict:
  try:
    meta = json.loads(raw)
  except ValueError as e:  # Includes undecodable bytes.
    raise BadSample("json_invalid", f"sidecar .json does not parse: {e}") from None
  if not isinstance(meta, dict):
    raise BadSample("json_invalid", f"sidecar .json holds a {type(meta).__name__}, not an "
                    "object")
  return meta


def _open(spec: str, options: SourceOptions) -> WebDatasetSource:
  return WebDatasetSource(spec, image_key=options.image_key, text_key=options.text_key,
                          skip_bad_shards=options.skip_bad_shards,
                          index_cache_dir=options.index_cache_dir)


register(SourceKind(SCHEME, "wds:/data/laion/{00000..01023}.tar", _open))
