"""Where a compiled step's time goes: a jax.profiler trace summed by HLO op kind.

train_step.py's `--profile` traces a few steps of each lang_image variant and calls
`op_time_by_kind`. Each traced XLA:CPU op is named after its HLO instruction
("ynn_fusion.550", "multiply_erf_fusion.9"); the kind is that name without its number.
YNNPACK fusions are split into "ynn dot" (the called computation holds a dot) and "ynn
other" (reductions, transposes). Times are summed over ops, so with ops running
concurrently they add up to more than the step's wall time: read them as shares.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import tempfile

import jax

import hlo  # benchmarks/hlo.py


def op_time_by_kind(step_fn, hlo_text: str, steps: int = 3) -> dict[str, float]:
  """Runs `step_fn` `steps` times under the profiler; seconds per step by op kind."""
  ops = set(re.findall(r"%([\w.\-]+) = ", hlo_text))
  dot_fusions = hlo.fusions_with_dots(hlo_text)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(steps):
        step_fn()
    (path,) = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") != "X" or name not in ops:
      continue
    kind = re.sub(r"\.\d+$", "", name)
    if kind == "ynn_fusion":
      kind = "ynn dot" if name in dot_fusions else "ynn other"
    total[kind] += e["dur"] * 1e-6 / steps
  return dict(total.most_common())


def format_profile(name: str, by_kind: dict[str, float], top: int = 12) -> str:
  summed = sum(by_kind.values())
  lines = [f"# op time of {name} by HLO op kind, summed over ops: {summed * 1e3:.0f} ms a step"]
  for kind, sec in list(by_kind.items())[:top]:
    lines.append(f"#   {kind:<28} {sec * 1e3:7.1f} ms  {100 * sec / summed:4.1f}%")
  return "\n".join(lines)
