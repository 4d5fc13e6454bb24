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


def load(workdir: str) -> ml_collections.ConfigDict:
  path = storage.join(workdir, FILE)
  if not storage.exists(path):
    raise ConfigError(f"'{path}' does not exist (a training run writes it when it finishes); "
                      f"pass the run's --config instead.")
  return ml_collections.ConfigDict(json.loads(storage.read_text(path)))
