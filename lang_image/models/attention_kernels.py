"""Which attention kernel the towers run: `config.model.attention`.

  xla    jax.nn.dot_product_attention's XLA implementation: every backend (the default).
  cudnn  cuDNN's fused flash attention, jax.nn.dot_product_attention(implementation='cudnn'):
         NVIDIA GPUs of compute capability 8.0 or later, attention inputs in bfloat16
         (config.model.dtype='bfloat16', or matmul_precision='bf16_f32acc', which casts q, k,
         v to bf16 for the kernel) and head dimensions that are multiples of 8 up to 128
         (256 from compute capability 9.0).
  auto   cudnn where the run's devices and model allow it, else xla.

An explicit `cudnn` that cannot run fails at config validation with one sentence, before
anything compiles; `auto` never fails.
"""

from __future__ import annotations

from lang_image.models import variants

KERNELS = ("xla", "cudnn", "auto")


def _head_dims(model_cfg) -> list[int]:
  vit = variants.parse_vit(model_cfg.image)
  text = variants.parse_text(model_cfg.text)
  return sorted({vit.width // vit.heads, text.width // text.heads})


def _capability(device) -> tuple[int, ...] | None:
  raw = getattr(device, "compute_capability", None)
  try:
    return tuple(int(x) for x in str(raw).split("."))
  except ValueError:
    return None


def cudnn_problem(model_cfg, platform: str, device=None) -> str | None:
  """Why cuDNN flash attention cannot run this model on these devices (a clause that fits
  after "config.model.attention='cudnn' ..."), or None if it can."""
  if platform != "gpu":
    return (f"needs an NVIDIA GPU, but this run's devices are {platform.upper()}; use "
            "attention='xla' (or 'auto', which picks cudnn only where it runs)")
  capability = _capability(device) if device is not None else None
  if capability is None or capability < (8, 0):
    shown = getattr(device, "compute_capability", "unknown")
    return (f"needs an NVIDIA GPU of compute capability 8.0 or later, and this one's is "
            f"{shown}; use attention='xla'")
  if model_cfg.dtype != "bfloat16" and getattr(model_cfg, "matmul_precision",
                                                      "default") != "bf16_f32acc":
    return ("needs bfloat16 attention inputs, and this model computes in float32; set "
            "config.model.dtype='bfloat16' or config.model.matmul_precision='bf16_f32acc', "
            "or use attention='xla'")
  limit = 256 if capability >= (9, 0) else 128
  bad = [h for h in _head_dims(model_cfg) if h % 8 or h > limit]
  if bad:
    return (f"needs head dimensions that are multiples of 8 up to {limit}, and this model "
            f"has {bad[0]}; use attention='xla'")
  return None


def check(model_cfg, platform: str, device=None) -> None:
  """Raises ValueError (one sentence) for an unknown kernel or a `cudnn` that cannot run."""
  kernel = getattr(model_cfg, "attention", "xla")
  if kernel not in KERNELS:
    raise ValueError(f"unknown config.model.attention {kernel!r}; use one of {list(KERNELS)}.")
  if kernel == "cudnn":
    problem = cudnn_problem(model_cfg, platform, device)
    if problem:
      raise ValueError(f"config.model.attention='cudnn' {problem}.")


def implementation(model_cfg, devices=None) -> str:
  """The `implementation` argument of jax.nn.dot_product_attention for this config on these
  devices (default: jax's default backend): 'xla' or 'cudnn'."""
  kernel = getattr(model_cfg, "attention", "xla")
  if kernel != "auto":
    return kernel
  if devices is None:
    import jax
    devices = jax.devices()
  device = devices[0]
  return "cudnn" if cudnn_problem(model_cfg, device.platform, device) is None else "xla"
