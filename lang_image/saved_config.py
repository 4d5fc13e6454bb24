"""The config a run trained with, kept in its workdir as W/config.json, so that evaluation and
notebooks rebuild the same model and data without the original command line."""

from __future__ import annotations

import json

import ml_collections

from lang_image import storage
from lang_image.errors import ConfigError

FILE = "config.json"


def save(workdir: str, config) -> str:
  path = storage.join(workdir, FILE)
  storage.write_text(path, config.to_json(indent=2, sort_keys=True))
  return path


def resolved(config, *, data_dir: str, eval_dataset: str) -> ml_collections.ConfigDict:
  """A copy of `config` with what was resolved at run time written in, so that evaluation in
  a new shell needs no environment variable: the data directory (config.data.data_dir, empty
  meaning $LANG_IMAGE_DATA_DIR or the default) and the eval set chosen for 'auto'."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.data.data_dir = storage.join(data_dir)  # Absolute; a URL stays a URL.
  if "eval" in out and "dataset" in out.eval:
    out.eval.dataset = eval_dataset
  return out


def load(workdir: str) -> ml_collections.ConfigDict:
  path = storage.join(workdir, FILE)
  if not storage.exists(path):
    raise ConfigError(f"'{path}' does not exist (a training run writes it when it finishes); "
                      f"pass the run's --config instead.")
  return ml_collections.ConfigDict(json.loads(storage.read_text(path)))
