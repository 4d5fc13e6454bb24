"""`config.data.pp`: a '|'-joined chain of registered ops (ops.py) turned into one callable.

    decode|random_resized_crop(scale=(0.9, 1.0))|flip_lr|choose_caption|tokenize
"""

from __future__ import annotations

import ast
import math

import numpy as np

from lang_image.data.ops import OPS, Context, decode
from lang_image.errors import ConfigError


def parse(pp: str) -> list[tuple[str, tuple, dict]]:
  """'a|b(1, x=2)' -> [('a', (), {}), ('b', (1,), {'x': 2})]; ConfigError if malformed."""
  steps = []
  for text in (part.strip() for part in pp.split("|")):
    if not text:
      continue
    try:
      call = ast.parse(text, mode="eval").body
      if isinstance(call, ast.Name):
        name, args, kwargs = call.id, (), {}
      elif isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
        name = call.func.id
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
      else:
        raise ValueError(text)
    except (SyntaxError, ValueError):
      raise ConfigError(f"preprocessing op '{text}' does not parse; write it as name or "
                        "name(literal arguments), e.g. random_resized_crop(224, "
                        "scale=(0.9, 1.0)).") from None
    if name not in OPS:
      raise ConfigError(f"unknown preprocessing op '{name}' in config.data.pp; the known ops "
                        f"are {sorted(OPS)}.")
    steps.append((name, args, kwargs))
  return steps


class Preprocess:
  """The composed ops of a pp string: `(sample, rng) -> sample`."""

  def __init__(self, pp: str, ctx: Context):
    self.pp = pp
    self.steps = parse(pp)
    self.ops = []
    for name, args, kwargs in self.steps:
      try:
        self.ops.append(OPS[name](ctx, *args, **kwargs))
      except TypeError as e:
        raise ConfigError(f"preprocessing op '{name}' got bad arguments ({e}); fix "
                          "config.data.pp.") from None
    names = [name for name, _, _ in self.steps]
    if "tokenize" in names and ctx.tokenizer is None:
      raise ConfigError("the 'tokenize' op needs a tokenizer; set config.data.tokenizer.")
    # A JPEG may be decoded at reduced scale when the next geometric op shrinks it anyway.
    if names[:1] == ["decode"] and len(self.ops) > 1 and not self.steps[0][2]:
      min_size = getattr(self.ops[1], "min_source_size", None)
      if min_size:
        self.ops[0] = decode(ctx, draft=int(math.ceil(min_size)))

  def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
    for op in self.ops:
      sample = op(sample, rng)
    if "image" in sample and not isinstance(sample["image"], np.ndarray):
      sample = dict(sample, image=np.asarray(sample["image"]))
    return sample
