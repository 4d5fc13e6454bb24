"""Reading a compiled XLA program's text: what its dots take and return.

XLA:CPU runs a bf16 dot in bf16 only when its libraries take it; otherwise it rewrites the dot
to float32 on converted operands, which shows in the operand types here.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_DOT = re.compile(r"= (\w+)\[([\d,]*)\]\S* dot\((%[\w.-]+), (%[\w.-]+)\)")
_FUSION = re.compile(r"%([\w.-]+) = [^\n]*? fusion\([^\n]*?calls=%([\w.-]+)")


class Dot(NamedTuple):
  lhs: str          # element types, e.g. "bf16"
  rhs: str
  result: str
  lhs_shape: str    # dimensions as written, e.g. "64,256"
  rhs_shape: str
  result_shape: str

  @property
  def kind(self) -> str:
    return f"{self.lhs} x {self.rhs} -> {self.result}"


def _computations(hlo_text: str) -> list[str]:
  """The module's computations, each as its text (header line first)."""
  return re.split(r"\n(?=%|ENTRY)", hlo_text)


def dots(hlo_text: str) -> list[Dot]:
  """Every dot of an optimised HLO module (`jax.jit(f).lower(...).compile().as_text()`)."""
  found = []
  for computation in _computations(hlo_text):
    for line in computation.splitlines():
      m = _DOT.search(line)
      if not m:
        continue
      operands = []
      for name in m.group(3, 4):
        o = re.search(re.escape(name) + r" = (\w+)\[([\d,]*)\]", computation)
        operands.append((o.group(1), o.group(2)) if o else ("?", "?"))
      found.append(Dot(operands[0][0], operands[1][0], m.group(1),
                       operands[0][1], operands[1][1], m.group(2)))
  return found


def dot_census(hlo_text: str) -> dict[str, int]:
  """{"bf16 x bf16 -> f32": count, ...} over every dot of the module."""
  counts: dict[str, int] = {}
  for d in dots(hlo_text):
    counts[d.kind] = counts.get(d.kind, 0) + 1
  return counts


def fusions_with_dots(hlo_text: str) -> set[str]:
  """Names of the fusion instructions whose called computation contains a dot."""
  with_dot = {computation.split(None, 1)[0].lstrip("%")
              for computation in _computations(hlo_text) if _DOT.search(computation)}
  return {m.group(1) for m in _FUSION.finditer(hlo_text) if m.group(2) in with_dot}
