"""Random-access sources of image-text records for researchers' own data (`open_source`).

    wds:/data/laion/{00000..01023}.tar   webdataset shards ('::' joins several patterns)
    csv:/data/cc3m/train.csv             CSV with `filepath` and `title` columns
    jsonl:/data/pairs/train.jsonl        one JSON object a line, same fields
    tfds:coco_captions/2017:train        a tfds dataset prepared on disk

Every source returns {"image": encoded bytes (or uint8 pixels), "caption": str | list[str],
"key": str} records and raises `base.BadSample` for a faulty sample (base.py).
"""

from __future__ import annotations

from lang_image.data.sources.base import (REASONS, BadSample, DataError, Source,  # noqa: F401
                                          caption_text)

SCHEMES = ("wds", "csv", "jsonl", "tfds")
EXAMPLES = {
    "wds": "wds:/data/laion/{00000..01023}.tar",
    "csv": "csv:/data/cc3m/train.csv",
    "jsonl": "jsonl:/data/pairs/train.jsonl",
    "tfds": "tfds:coco_captions/2017:train",
}


def open_source(spec: str, *, image_key: str = "", text_key: str = "", csv_separator: str = ",",
                skip_bad_shards: bool = False, tfds_data_dir: str | None = None,
                index_cache_dir: str | None = None) -> Source:
  """Opens the source `spec` names (see the module docstring): indexes are built or read from
  `index_cache_dir`, and files that cannot be read raise `DataError` now rather than later.

  image_key / text_key: empty for each kind's default, else a webdataset extension (';'
  between alternatives; 'json:FIELD' for a sidecar field), a CSV column, a JSON field or a
  tfds feature path. skip_bad_shards: pass over unreadable webdataset shards with a warning.
  """
  spec = spec.strip()
  scheme, sep, _ = spec.partition(":")
  if not sep or scheme not in SCHEMES:
    known = "; ".join(f"{s} (e.g. {EXAMPLES[s]})" for s in SCHEMES)
    raise DataError(f"'{spec}' does not start with a known scheme; write one of {known}.")
  if scheme == "wds":
    from lang_image.data.sources import webdataset
    return webdataset.WebDatasetSource(spec, image_key=image_key, text_key=text_key,
                                       skip_bad_shards=skip_bad_shards,
                                       index_cache_dir=index_cache_dir)
  if scheme == "csv":
    from lang_image.data.sources import table
    return table.CsvSource(spec, image_key=image_key, text_key=text_key,
                           separator=csv_separator)
  if scheme == "jsonl":
    from lang_image.data.sources import table
    return table.JsonlSource(spec, image_key=image_key, text_key=text_key)
  # tensorflow_datasets is slow to import: only tfds: sources pay for it.
  from lang_image.data.sources import tfds_source
  return tfds_source.TfdsSource(spec, image_key=image_key, text_key=text_key,
                                data_dir=tfds_data_dir, index_cache_dir=index_cache_dir)
