"""The config a run trained with, kept in its workdir as W/config.json, so that evaluation and
notebooks rebuild the same model and data without the original command line."""

from __future__ import annotations

import json
import os

import ml_collections

from lang_image.errors import ConfigError

FILE = "config.json"


def save(workdir: str, config) -> str:
  path = os.path.join(workdir, FILE)
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)
  return path


def load(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, FILE)
  if not os.path.isfile(path):
    raise ConfigError(f"'{path}' does not exist (a training run writes it when it finishes); "
                      f"pass the run's --config instead.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))
