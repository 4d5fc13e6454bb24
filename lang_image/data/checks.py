"""`check_config(config.data)`: the data spec, preprocessing and directories, checked before
anything compiles (the sources themselves are opened, and so checked, later but still before
the first compile)."""

from __future__ import annotations

import os

from lang_image import storage
from lang_image.data import pipeline, sources
from lang_image.data import preprocess as preprocess_lib
from lang_image.errors import ConfigError


def check_config(data_cfg) -> None:
  """Raises ConfigError with one sentence for the first problem of `config.data`."""
  _check_data_dir(data_cfg.data_dir)
  for spec, _ in pipeline.parse_mixture(data_cfg.name):
    try:
      sources.kind_of(spec)
    except sources.DataError:
      raise ConfigError(f"config.data.name '{spec}' names no known data: use one of "
                        f"{sources.registry.describe_known()}.") from None
  _check_caption_noise(data_cfg)
  preprocess_lib.parse(data_cfg.pp or pipeline.default_pp(data_cfg.name))
  if int(data_cfg.threads) < 1:
    raise ConfigError(f"config.data.threads must be at least 1, got {data_cfg.threads}.")


def _check_data_dir(path: str) -> None:
  if not path:  # The default cache directory is created on first use.
    return
  try:
    storage.check(path, "config.data.data_dir")
  except storage.StorageError as e:
    raise ConfigError(str(e)) from None
  if storage.is_remote(path):
    return  # Created on first use, like the default; a missing bucket fails then.
  if not os.path.isdir(path):
    raise ConfigError(f"data directory '{path}' does not exist; create it, point "
                      "config.data.data_dir at the right place, or leave it empty for the "
                      "default cache.")
  if not os.access(path, os.R_OK | os.X_OK):
    raise ConfigError(f"data directory '{path}' is not readable; fix its permissions or "
                      "choose another config.data.data_dir.")


def _check_caption_noise(data_cfg) -> None:
  noise = float(data_cfg.get("caption_noise", 0.0))
  if not 0.0 <= noise <= 1.0:
    raise ConfigError(f"config.data.caption_noise must be a fraction in [0, 1], got {noise}.")
  if noise == 0.0:
    return
  for spec, _ in pipeline.parse_mixture(data_cfg.name):
    if not sources.kind_of(spec).caption_noise:
      noisy = [k.name for k in sources.KINDS.values() if k.caption_noise]
      raise ConfigError(f"config.data.caption_noise is {noise} but '{spec}' cannot make its "
                        f"captions noisy; set it to 0 or train on {' or '.join(noisy)}.")
