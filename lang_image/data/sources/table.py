"""`csv:` and `jsonl:` sources: a table of image paths and captions, open_clip's convention.

    csv:/data/cc3m/train.csv       header row with columns `filepath` and `title`
    jsonl:/data/pairs/train.jsonl  one object per line with fields `filepath` and `title`

The column or field names are set by image_key / text_key, the CSV separator by csv_separator
(open_clip's files often use a tab: `\\t`, as bash passes `--config.data.csv_separator='\\t'`,
or `tab`). A relative image path is relative to the directory of the table. A JSONL caption
may be a list of captions.

Opening a table reads it once to find where each row starts (only those offsets are kept,
8 bytes a row); a row is read again and parsed when it is accessed, and its image file is
read then. The file is read as bytes and decoded with errors='surrogateescape', so a row with
bytes that are not UTF-8 only makes that sample bad (caption_not_utf8), and a JSONL line
that does not parse only makes its sample bad (json_invalid).
"""

from __future__ import annotations

import array
import csv
import io
import json
import os

from absl import logging
import numpy as np

from lang_image.data.sources.registry import SourceKind, register
from lang_image.data.sources.base import (BadSample, DataError, Source, caption_text,
                                          check_index, read_file)

DEFAULT_IMAGE_KEY = "filepath"
DEFAULT_TEXT_KEY = "title"
_BOM = "\ufeff"


class _TableSource(Source):
  """Rows at known byte offsets of one file; subclasses parse a row into (image path,
  caption value)."""

  scheme = ""

  def __init__(self, spec: str, image_key: str, text_key: str):
    self.name = spec
    self.skipped_shards = []
    self.path = os.path.expanduser(spec.partition(":")[2].strip())
    self.image_key = image_key or DEFAULT_IMAGE_KEY
    self.text_key = text_key or DEFAULT_TEXT_KEY
    self._dir = os.path.dirname(os.path.abspath(self.path))
    if not self.path:
      raise DataError(f"'{spec}' names no file; write it as {self.scheme}:/path/to/file.")
    try:
      with open(self.path, "rb") as f:
        starts, end = self._scan(f)
    except OSError as e:
      raise DataError(f"cannot open {self.path} ({e.strerror or e}); check the path given "
                      f"in '{spec}'.") from None
    # Row k spans starts[k]..starts[k + 1] (blank lines in between do not matter).
    self._starts = np.append(np.frombuffer(starts, np.int64), np.int64(end))
    if not len(self):
      raise DataError(f"{self.path} holds no rows; check that '{spec}' names the right file.")
    logging.info("Opened %s: %d rows.", spec, len(self))

  def _scan(self, f) -> tuple[array.array, int]:
    raise NotImplementedError

  def _parse(self, raw: bytes) -> tuple[object, object]:
    """A row's bytes -> (image path, caption value), either None where absent."""
    raise NotImplementedError

  def __len__(self) -> int:
    return len(self._starts) - 1

  def __getitem__(self, index) -> dict:
    i = check_index(index, len(self))
    start, end = int(self._starts[i]), int(self._starts[i + 1])
    image_path, caption = self._parse(read_file(self.path, start, end - start))
    caption = caption_text(caption)
    if not isinstance(image_path, str) or not image_path.strip():
      raise BadSample("image_missing", f"no image path in the {self.image_key!r} field")
    path = os.path.join(self._dir, os.path.expanduser(image_path.strip()))
    try:
      image = read_file(path)
    except OSError as e:
      raise BadSample("image_missing", f"cannot read {path} ({e.strerror or e})") from None
    return {"image": image, "caption": caption, "key": f"row {i}"}


# Ways to name a tab that survive the shell: backslash-t as typed in single quotes, and a name.
SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t"}


def csv_delimiter(separator: str) -> str:
  """The one character that `separator` (config.data.csv_separator) names."""
  delimiter = SEPARATOR_NAMES.get(separator, separator)
  if len(delimiter) != 1:
    raise DataError(f"csv_separator {separator!r} is not one character; use e.g. ',', ';', "
                    "'\\t' or 'tab'.")
  return delimiter


class CsvSource(_TableSource):
  """A CSV file with a header row (see the module docstring)."""

  scheme = "csv"

  def __init__(self, spec: str, *, image_key: str = "", text_key: str = "",
               separator: str = ","):
    self.separator = csv_delimiter(separator)
    super().__init__(spec, image_key, text_key)

  def _reader(self, lines):
    return csv.reader(lines, delimiter=self.separator)

  def _scan(self, f):
    position = 0

    def lines():
      nonlocal position
      for raw in f:
        position += len(raw)
        yield raw.decode("utf-8", "surrogateescape")

    reader = self._reader(lines())
    starts = array.array("q")
    try:
      header = next(reader, None)
      if header is None:
        raise DataError(f"{self.path} is empty; a CSV source needs a header row naming the "
                        f"columns {self.image_key!r} and {self.text_key!r}.")
      header = [h.strip() for h in header]
      if header:
        header[0] = header[0].lstrip(_BOM)
      missing = [k for k in (self.image_key, self.text_key) if k not in header]
      if missing:
        hint = (f", or set --config.data.csv_separator (now {self.separator!r})"
                if len(header) == 1 else "")
        raise DataError(f"{self.path} has no column {missing[0]!r} (its columns are {header}); "
                        f"name the image and caption columns with --config.data.image_key and "
                        f"--config.data.text_key{hint}.")
      self._columns = header.index(self.image_key), header.index(self.text_key)
      start = position
      for row in reader:
        if any(field.strip() for field in row):
          starts.append(start)
        start = position
    except csv.Error as e:
      raise DataError(f"{self.path} does not parse as CSV near line {reader.line_num} ({e}); "
                      "fix that line or check --config.data.csv_separator.") from None
    return starts, position

  def _parse(self, raw):
    # Split into lines as when scanning, so that quoted newlines come out the same.
    lines = [line.decode("utf-8", "surrogateescape") for line in io.BytesIO(raw)]
    row = next(self._reader(lines), [])
    image_col, text_col = self._columns
    image = row[image_col] if image_col < len(row) else None
    caption = row[text_col] if text_col < len(row) else None
    return image, caption


class JsonlSource(_TableSource):
  """A file of JSON objects, one a line (see the module docstring)."""

  scheme = "jsonl"

  def __init__(self, spec: str, *, image_key: str = "", text_key: str = ""):
    super().__init__(spec, image_key, text_key)

  def _scan(self, f):
    starts = array.array("q")
    position = 0
    for raw in f:
      if raw.strip():
        starts.append(position)
      position += len(raw)
    return starts, position

  def _parse(self, raw):
    try:
      # Undecodable bytes become lone surrogates, which caption_text reports.
      obj = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError as e:
      raise BadSample("json_invalid", f"the line does not parse: {e}") from None
    if not isinstance(obj, dict):
      raise BadSample("json_invalid", f"the line holds a {type(obj).__name__}, not an object")
    return obj.get(self.image_key), obj.get(self.text_key)


register(SourceKind("csv", "csv:/data/cc3m/train.csv", lambda spec, o: CsvSource(
    spec, image_key=o.image_key, text_key=o.text_key, separator=o.csv_separator)))
register(SourceKind("jsonl", "jsonl:/data/pairs/train.jsonl", lambda spec, o: JsonlSource(
    spec, image_key=o.image_key, text_key=o.text_key)))
