"""Rasterising scenes of simple shapes: anti-aliased polygons and discs over a noisy background.

An object may carry a `texture` (TEXTURES; solid when absent): dark diagonal stripes, dark
dots, or hollow (only a ring of its outline is painted). Each keeps the object one connected
blob in its own colour for most of its pixels (a hollow object's outline is _OUTLINE pixels
wide).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def _outline(shape: str, angle: float) -> np.ndarray:
  """Polygon vertices of a shape of unit radius centred on the origin."""
  if shape == "square":
    pts = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)])
  elif shape == "triangle":
    t = np.deg2rad([-90, 30, 150])
    pts = np.stack([np.cos(t), np.sin(t)], -1)
  elif shape == "star":
    t = np.deg2rad(np.arange(10) * 36 - 90)
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    pts = np.stack([r * np.cos(t), r * np.sin(t)], -1)
  elif shape == "cross":
    a, w = 0.95, 0.3
    pts = np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
                    (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)])
  elif shape == "heart":
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], -1)
  else:
    raise ValueError(shape)
  # Centre the bounding box and fit inside the unit circle, so any rotation
  # stays within the object's diameter and its raster window.
  pts = pts - (pts.min(0) + pts.max(0)) / 2
  pts = pts / np.hypot(*pts.T).max()
  c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
  return pts @ np.array([[c, s], [-s, c]])


TEXTURES = ("solid", "striped", "dotted", "hollow")
# Width in pixels of a hollow object's outline.
_OUTLINE = 3
# How much darker the stripes and dots are than the object's colour.
_PATTERN_SHADE = 0.45


def _coverage(obj: dict, image_size: int, outline: int = 0) -> tuple[np.ndarray, int, int]:
  """Anti-aliased coverage mask of one object (only a band `outline` pixels wide inside its
  edge, if given) and its top-left pixel."""
  radius = obj["diameter"] / 2
  x0 = max(int(math.floor(obj["cx"] - radius)) - 1, 0)
  y0 = max(int(math.floor(obj["cy"] - radius)) - 1, 0)
  side = int(math.ceil(obj["diameter"])) + 3
  side = min(side, image_size - x0, image_size - y0)
  # Rasterise only the object's own small window, at 4x, and box-filter it
  # down: far cheaper than supersampling the whole image.
  k = 4
  canvas = Image.new("L", (side * k, side * k), 0)
  draw = ImageDraw.Draw(canvas)
  cx, cy, r = (obj["cx"] - x0) * k, (obj["cy"] - y0) * k, radius * k
  if obj["shape"] == "circle":
    r *= 0.88
    if outline:
      draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=outline * k)
    else:
      draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
  else:
    pts = _outline(obj["shape"], obj["angle"]) * r + (cx, cy)
    if outline:
      draw.polygon([tuple(p) for p in pts], outline=255, width=outline * k)
    else:
      draw.polygon([tuple(p) for p in pts], fill=255)
  small = canvas.resize((side, side), Image.BOX)
  return np.asarray(small, np.float32) / 255.0, x0, y0


def render(objects: list[dict], rng: np.random.Generator, colours: dict,
           image_size: int) -> np.ndarray:
  """Draws objects over a tinted, shaded, noisy light background -> uint8 [n, n, 3].

  An object is a dict with `shape`, `colour` (a key of `colours`, which maps it to RGB),
  centre `cx`, `cy`, `diameter` in pixels and `angle` in degrees.
  """
  n = image_size
  base = rng.uniform(185, 235) + rng.normal(0, 6, size=3)
  theta = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(theta) * np.arange(n)[None, :] + np.sin(theta) * np.arange(n)[:, None]) / n - 0.5
  img = (base + rng.uniform(0, 25) * ramp[..., None]).astype(np.float32)
  # Smooth colour blotches rather than per-pixel noise: still a nuisance for
  # the model, but half the PNG size on disk.
  blotch = rng.normal(0, 5.0, size=(3, 6, 6)).astype(np.float32)
  img += np.stack([np.asarray(Image.fromarray(b).resize((n, n), Image.BICUBIC))
                   for b in blotch], -1)
  for obj in objects:
    colour = np.array(colours[obj["colour"]]) + rng.normal(0, 10, size=3)
    texture = obj.get("texture", "solid")
    alpha, x0, y0 = _coverage(obj, n, _OUTLINE if texture == "hollow" else 0)
    paint = colour.astype(np.float32)
    if texture in ("striped", "dotted"):
      paint = paint * (1.0 - _PATTERN_SHADE * _pattern(texture, x0, y0, alpha.shape)[..., None])
    window = img[y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]]
    window += alpha[..., None] * (paint - window)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _pattern(texture: str, x0: int, y0: int, shape) -> np.ndarray:
  """1 where a striped or dotted object is darkened, 0 elsewhere, in image coordinates so that
  neighbouring objects' patterns line up. Stripes: 2 of every 5 diagonal pixels; dots: one
  dot of about 5 pixels in every 5 x 5 cell."""
  y, x = np.mgrid[y0:y0 + shape[0], x0:x0 + shape[1]]
  if texture == "striped":
    return ((x + y) % 5 < 2).astype(np.float32)
  if texture == "dotted":
    return (((x % 5) - 2) ** 2 + ((y % 5) - 2) ** 2 <= 1).astype(np.float32)
  raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")
