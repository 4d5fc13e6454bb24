"""Named tower sizes, kept as plain data so configs can refer to them by string.

A ViT variant string is "<size>/<patch>" (e.g. "B/16", "So400m/14"); a text
variant is just "<size>" (e.g. "B"). The tables are the single source of truth:
adding a size means adding one row here.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class TextSpec:
  width: int
  depth: int
  heads: int
  mlp_dim: int


@dataclasses.dataclass(frozen=True)
class VitSpec:
  width: int
  depth: int
  heads: int
  mlp_dim: int
  patch: int


# (width, depth, heads, mlp_dim). "mu" exists only so that the whole pipeline
# can run end to end on a laptop CPU in seconds.
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "mu": (128, 4, 4, 512),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "So400m": (1152, 27, 16, 4304),
    "H": (1280, 32, 16, 5120),
    "g": (1408, 40, 16, 6144),
}

# Text towers are narrower than the image tower of the same name, following
# the usual CLIP pairings (e.g. CLIP B/16 pairs a 768-wide ViT with a 512-wide
# text encoder); "So400m" is the SigLIP shape-optimised text tower.
TEXT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "mu": (128, 4, 4, 512),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (512, 12, 8, 2048),
    "L": (768, 12, 12, 3072),
    "So400m": (1152, 27, 16, 4304),
    "H": (1024, 24, 16, 4096),
    "g": (1024, 24, 16, 4096),
}

_VIT_RE = re.compile(r"^(?P<size>[A-Za-z0-9]+)/(?P<patch>[0-9]+)$")


def _lookup(table: dict, size: str, kind: str) -> tuple[int, int, int, int]:
  if size not in table:
    raise ValueError(
        f"Unknown {kind} size {size!r}; known sizes are: {', '.join(table)}.")
  return table[size]


def parse_vit(name: str) -> VitSpec:
  """Parse e.g. "B/16" into VitSpec(768, 12, 12, 3072, patch=16)."""
  m = _VIT_RE.match(name.strip()) if isinstance(name, str) else None
  if m is None:
    raise ValueError(
        f"Bad ViT variant {name!r}: expected '<size>/<patch>' such as 'B/16', "
        f"with size one of: {', '.join(VIT_SIZES)}.")
  width, depth, heads, mlp_dim = _lookup(VIT_SIZES, m["size"], "ViT")
  patch = int(m["patch"])
  if patch <= 0:
    raise ValueError(f"Bad ViT variant {name!r}: patch size must be positive.")
  return VitSpec(width, depth, heads, mlp_dim, patch)


def parse_text(name: str) -> TextSpec:
  """Parse e.g. "B" into TextSpec(512, 12, 8, 2048)."""
  if not isinstance(name, str):
    raise ValueError(f"Bad text variant {name!r}: expected one of: {', '.join(TEXT_SIZES)}.")
  return TextSpec(*_lookup(TEXT_SIZES, name.strip(), "text"))
