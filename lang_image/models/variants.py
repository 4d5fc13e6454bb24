"""Named tower sizes, kept as plain data so configs can refer to them by string.

A ViT variant string is "<size>/<patch>" (e.g. "B/16", "So400m/14"); a text
variant is just "<size>" (e.g. "B"). The tables are the single source of truth:
adding a size means adding one row here.

A size may also be spelled out as "w<width>-d<depth>-h<heads>-mlp<mlp_dim>", e.g.
"w768-d12-h12-mlp3072/16" is B/16; imported checkpoints (lang_image.interop) describe their
towers this way. `vit_name` and `text_name` write a spec in that form.
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

_VIT_RE = re.compile(r"^(?P<size>[A-Za-z0-9-]+)/(?P<patch>[0-9]+)$")
_EXPLICIT_RE = re.compile(r"^w(?P<width>[0-9]+)-d(?P<depth>[0-9]+)-h(?P<heads>[0-9]+)"
                          r"-mlp(?P<mlp_dim>[0-9]+)$")


def _lookup(table: dict, size: str, kind: str) -> tuple[int, int, int, int]:
  explicit = _EXPLICIT_RE.match(size)
  if explicit:
    dims = tuple(int(explicit[k]) for k in ("width", "depth", "heads", "mlp_dim"))
    if min(dims) <= 0 or dims[0] % dims[2]:
      raise ValueError(f"Bad {kind} size {size!r}: every number must be positive and the "
                       "width divisible by the heads.")
    return dims
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


def _explicit(spec) -> str:
  return f"w{spec.width}-d{spec.depth}-h{spec.heads}-mlp{spec.mlp_dim}"


def vit_name(spec: VitSpec) -> str:
  """The variant string of any ViT spec, e.g. "w768-d12-h12-mlp3072/16"."""
  return f"{_explicit(spec)}/{spec.patch}"


def text_name(spec: TextSpec) -> str:
  """The variant string of any text spec, e.g. "w512-d12-h8-mlp2048"."""
  return _explicit(spec)
