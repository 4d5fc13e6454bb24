"""Preprocessing: a registry of named per-sample ops composed by a string.

    config.data.pp = "decode|random_resized_crop(scale=(0.9, 1.0))|flip_lr|choose_caption|tokenize"

Each op is written `name` or `name(arguments)` with Python literal arguments, and ops are
joined by '|'. A sample is a dict {"image": encoded bytes | uint8 array | PIL image,
"caption": str | list[str]}; after the last op the image is a uint8 (or, after
`value_range` / `normalize`, float32) [H, W, 3] array and the text an int32 [max_len] row.

Ops that take a size default to the model's input resolution (`config.model.image_size`), so
the pipeline string rarely repeats it. Random ops draw from a generator seeded by the sample's
position in the global stream, so an augmentation is a function of (seed, position) and a
resumed run sees the same crops and flips as an uninterrupted one.

Known ops: decode, resize, resize_small, central_crop, random_resized_crop, flip_lr,
value_range, normalize, choose_caption, tokenize (`OPS`).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from lang_image.errors import ConfigError
from lang_image.data.sources.base import BadSample

# PIL refuses images over ~89M pixels by default (decompression bombs); a corrupt header can
# also claim a huge size. Both are skipped as unreadable samples.
Image.MAX_IMAGE_PIXELS = 1 << 28


@dataclasses.dataclass
class Context:
  """What ops may need besides the sample."""
  image_size: int = 224
  max_len: int = 64
  tokenizer: object = None


Op = Callable[[dict, np.random.Generator], dict]
OPS: dict[str, Callable[..., Op]] = {}


def register(name: str):
  def wrap(factory):
    OPS[name] = factory
    return factory
  return wrap


def _pil(image) -> Image.Image:
  if isinstance(image, Image.Image):
    return image
  return Image.fromarray(np.asarray(image, np.uint8))


def _pixels(image) -> np.ndarray:
  return np.asarray(image) if isinstance(image, Image.Image) else image


def _decode_bytes(data: bytes, draft: int | None) -> Image.Image:
  try:
    image = Image.open(io.BytesIO(data))
    if draft and image.format == "JPEG":
      # JPEG can decode at 1/2, 1/4 or 1/8 scale directly from the DCT coefficients; draft
      # picks the smallest scale that stays at least `draft` pixels on each side.
      image.draft("RGB", (draft, draft))
    image = image.convert("RGB")
    image.load()
    return image
  except Exception as e:  # PIL raises many types for corrupt or truncated data.
    raise BadSample("image_unreadable", f"{type(e).__name__}: {e}") from None


@register("decode")
def decode(ctx: Context, draft: int | None = None) -> Op:
  """Encoded bytes -> RGB image (decoded pixel arrays pass through, grey gains 3 channels)."""

  def op(sample, rng):
    image = sample["image"]
    if isinstance(image, (bytes, bytearray, memoryview)):
      image = _decode_bytes(bytes(image), draft)
    else:
      image = np.asarray(image, np.uint8)
      if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
      if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise BadSample("image_unreadable", f"pixel array of shape {image.shape}")
      image = image[..., :3] if image.shape[-1] != 1 else np.repeat(image, 3, axis=-1)
    return dict(sample, image=image)
  return op


@register("resize")
def resize(ctx: Context, size: int | None = None) -> Op:
  """Resizes to size x size (aspect ratio not kept; bilinear, antialiased)."""
  size = size or ctx.image_size

  def op(sample, rng):
    return dict(sample, image=_pil(sample["image"]).resize((size, size), Image.BILINEAR))
  return op


@register("resize_small")
def resize_small(ctx: Context, size: int | None = None) -> Op:
  """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
  size = size or ctx.image_size

  def op(sample, rng):
    image = _pil(sample["image"])
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return dict(sample, image=image.resize(new, Image.BILINEAR))
  return op


@register("central_crop")
def central_crop(ctx: Context, size: int | None = None) -> Op:
  """The central size x size window (the image must be at least that large)."""
  size = size or ctx.image_size

  def op(sample, rng):
    image = _pil(sample["image"])
    w, h = image.size
    if w < size or h < size:
      image = image.resize((max(w, size), max(h, size)), Image.BILINEAR)
      w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return dict(sample, image=image.crop((left, top, left + size, top + size)))
  return op


def crop_box(rng: np.random.Generator, width: int, height: int, scale, ratio):
  """A random window of the image (Szegedy et al. 2015's 'inception crop', as torchvision
  draws it): area uniform in `scale` x image area, log aspect ratio uniform in `ratio`; after
  10 failed draws, the largest central window within `ratio`. -> (left, top, right, bottom)."""
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      left = int(rng.integers(0, width - w + 1))
      top = int(rng.integers(0, height - h + 1))
      return left, top, left + w, top + h
  aspect = width / height
  if aspect < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif aspect > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


@register("random_resized_crop")
def random_resized_crop(ctx: Context, size: int | None = None, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> Op:
  """A random window (`crop_box`) resized to size x size in one resampling step."""
  size = size or ctx.image_size
  scale, ratio = tuple(map(float, scale)), tuple(map(float, ratio))
  if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
    raise ConfigError(f"random_resized_crop needs 0 < scale[0] <= scale[1] <= 1 and "
                      f"0 < ratio[0] <= ratio[1], got scale={scale}, ratio={ratio}; fix "
                      "config.data.pp.")

  def op(sample, rng):
    image = _pil(sample["image"])
    box = crop_box(rng, *image.size, scale, ratio)
    return dict(sample, image=image.resize((size, size), Image.BILINEAR, box=box))
  op.min_source_size = size / math.sqrt(scale[0])  # What `decode` may reduce JPEGs to.
  return op


@register("flip_lr")
def flip_lr(ctx: Context, p: float = 0.5) -> Op:
  """Mirrors the image left-right with probability p."""

  def op(sample, rng):
    if rng.uniform() < p:
      return dict(sample, image=_pil(sample["image"]).transpose(Image.FLIP_LEFT_RIGHT))
    return sample
  return op


@register("value_range")
def value_range(ctx: Context, low: float = -1.0, high: float = 1.0) -> Op:
  """uint8 [0, 255] -> float32 [low, high]. The model normalises uint8 batches itself
  (config.model.image_norm), so use this only to feed a model float pixels."""

  def op(sample, rng):
    pixels = _pixels(sample["image"]).astype(np.float32)
    return dict(sample, image=low + pixels * ((high - low) / 255.0))
  return op


@register("normalize")
def normalize(ctx: Context, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> Op:
  """uint8 -> float32 (x / 255 - mean) / std per channel."""
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

  def op(sample, rng):
    pixels = _pixels(sample["image"]).astype(np.float32) / 255.0
    return dict(sample, image=(pixels - mean) / std)
  return op


@register("choose_caption")
def choose_caption(ctx: Context, mode: str = "random") -> Op:
  """One caption of a sample that has several: 'random' (uniform) or 'first'."""
  if mode not in ("random", "first"):
    raise ConfigError(f"choose_caption mode must be 'random' or 'first', got {mode!r}; fix "
                      "config.data.pp.")

  def op(sample, rng):
    caption = sample["caption"]
    if isinstance(caption, (list, tuple)):
      caption = caption[int(rng.integers(len(caption)))] if mode == "random" else caption[0]
    return dict(sample, caption=caption)
  return op


@register("tokenize")
def tokenize(ctx: Context, max_len: int | None = None) -> Op:
  """caption -> "text": int32 [max_len] ids ending in end-of-text (config.data.tokenizer)."""
  max_len = max_len or ctx.max_len

  def op(sample, rng):
    caption = sample["caption"]
    if isinstance(caption, (list, tuple)):
      caption = caption[0]
    out = {k: v for k, v in sample.items() if k != "caption"}
    out["text"] = ctx.tokenizer.encode([caption], max_len)[0]
    out["caption"] = caption
    return out
  return op
