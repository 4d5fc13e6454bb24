"""The largest global batch whose training step fits one device, from XLA's memory analysis of
compiled (never run) steps.

    python benchmarks/largest_batch.py --model=B/16 --precision=bfloat16 [--objective=clip]
        [--attention=xla] [--remat=none] [--memory_gib=N] [--fraction=0.9] [--multiple=32]

The step is `train.Trainer`'s, built as benchmarks/train_step.py builds it. Memory grows
linearly with the batch (activations; parameters and optimizer state are fixed), so two
compiles give the line, a third checks the batch it predicts, stepping down until it fits.
The device's memory is its `bytes_limit` (GPU), or --memory_gib. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import types

import train_step  # noqa: E402  (puts the repository on sys.path)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="B/16", choices=sorted(train_step.PRESETS))
  p.add_argument("--precision", default="bfloat16", choices=sorted(train_step.PRECISIONS))
  p.add_argument("--objective", default="clip", choices=train_step.OBJECTIVES)
  p.add_argument("--attention", default="", help="config.model.attention; empty: the config's")
  p.add_argument("--remat", default="none", help="config.model.remat")
  p.add_argument("--memory_gib", type=float, default=0.0,
                 help="device memory in GiB (default: the device's bytes_limit)")
  p.add_argument("--fraction", type=float, default=0.9,
                 help="share of the memory the step may take (the rest: XLA's workspace, "
                      "fragmentation)")
  p.add_argument("--multiple", type=int, default=32, help="the batch is a multiple of this")
  return p.parse_args(argv)


def step_bytes(args, batch: int) -> int:
  """Arguments + outputs - aliased + temporaries of the compiled step at `batch`."""
  run_args = types.SimpleNamespace(objectives=[args.objective], attention=args.attention,
                                   remat=args.remat, batch=batch)
  variant = train_step.JaxVariant(train_step.PRESETS[args.model], args.objective,
                                  args.precision, run_args)
  variant.compile()
  if variant.xla_bytes is None:
    raise SystemExit("largest_batch.py: this backend gives no memory analysis.")
  return variant.xla_bytes


def main(argv=None) -> dict:
  args = parse_args(argv)
  import jax
  memory = int(args.memory_gib * 2**30)
  if not memory:
    stats = jax.devices()[0].memory_stats() or {}
    memory = int(stats.get("bytes_limit", 0))
  if not memory:
    raise SystemExit("largest_batch.py: the device reports no memory size; pass --memory_gib.")
  budget = args.fraction * memory
  k = args.multiple
  small, large = 2 * k, 4 * k
  m_small, m_large = step_bytes(args, small), step_bytes(args, large)
  per_pair = (m_large - m_small) / (large - small)
  fixed = m_small - per_pair * small
  batch = max(k, int((budget - fixed) / per_pair) // k * k)
  tried = {small: m_small, large: m_large}
  for _ in range(4):
    tried[batch] = step_bytes(args, batch)
    if tried[batch] <= budget or batch == k:
      break
    batch = max(k, int(batch * budget / tried[batch]) // k * k)
  result = dict(model=args.model, precision=args.precision, objective=args.objective,
                attention=args.attention or "config", remat=args.remat, batch=batch,
                step_bytes=tried[batch], fits=tried[batch] <= budget, device_bytes=memory,
                fraction=args.fraction, bytes_per_pair=per_pair, fixed_bytes=fixed,
                compiled={str(b): m for b, m in sorted(tried.items())})
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
