"""`check_config(config.model)`: the model fields, checked before anything is built."""

from __future__ import annotations

from lang_image.errors import ConfigError
from lang_image.models import attention_kernels, layers, matmul_precision, two_tower, variants
from lang_image.models.pretrainer import IMAGE_NORMS


def _one_of(field: str, value, known) -> None:
  if value not in known:
    raise ConfigError(f"unknown config.model.{field} {value!r}; use one of {list(known)}.")


def check_config(model_cfg, platform: str = "cpu", device=None) -> None:
  """Raises ConfigError with one sentence for the first bad field of `config.model`;
  `platform` and `device` are the run's ('cpu', 'gpu', 'tpu'; its first device)."""
  _one_of("image_norm", model_cfg.image_norm, IMAGE_NORMS)
  _one_of("dtype", model_cfg.dtype, two_tower.DTYPES)
  _one_of("matmul_precision", model_cfg.matmul_precision, matmul_precision.MATMUL_PRECISIONS)
  _one_of("remat", model_cfg.remat, layers.REMAT_POLICIES)
  try:
    vit = variants.parse_vit(model_cfg.image)
    variants.parse_text(model_cfg.text)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  try:
    attention_kernels.check(model_cfg, platform, device)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if model_cfg.image_size % vit.patch:
    raise ConfigError(f"image size {model_cfg.image_size} is not divisible by patch "
                      f"{vit.patch} of '{model_cfg.image}'; change config.model.image_size.")
  if model_cfg.image_stem == "conv" and vit.patch & (vit.patch - 1):
    raise ConfigError(f"the conv image stem needs a power-of-two patch, and "
                      f"'{model_cfg.image}' has {vit.patch}; set "
                      "config.model.image_stem='patch' or pick patch 8, 16 or 32.")
