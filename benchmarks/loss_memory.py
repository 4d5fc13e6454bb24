"""Per-device memory of each objective's loss and gradients against the global batch.

    python benchmarks/loss_memory.py [--devices=8] [--batches=1024,4096,16384,65536]

Compiles (never runs) the objective on the towers' outputs — loss, metrics and gradients
for heads and outputs — over a mesh of simulated CPU devices, for the shard_map and the
global implementation, and prints XLA's per-device memory analysis: temporary buffers
(the loss's working memory), and the largest single array in the per-device program.
Dimensions are those of a ViT-B/16 CLIP (embedding 512, image width 768, text width 512)
with each objective's default head sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--batches", default="1024,4096,16384,65536")
  parser.add_argument("--objectives", default="clip,siglip,rankclip,nclip,xclip,cliplite")
  parser.add_argument("--impls", default="shard_map,global")
  return parser.parse_args()


ARGS = parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402

from lang_image import objectives, parallel  # noqa: E402
import loss_program as lp  # noqa: E402  (benchmarks/loss_program.py)

SETUPS = {
    "clip": {"clip": {}},
    "siglip": {"siglip": {}},
    "rankclip": {"clip": {}, "rankclip": {}},
    "nclip": {"nclip": {}},
    "xclip": {"clip": {}, "nclip": {}},
    "cliplite": {"cliplite": {}},
}
DIMS = lp.Dims(image_width=768, text_width=512, embed_dim=512)


def mib(n: int) -> str:
  return f"{n / 2 ** 20:,.0f}"


def main():
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  batches = [int(b) for b in ARGS.batches.split(",")]
  print(f"# {jax.device_count()} simulated devices, jax {jax.__version__}; "
        f"MiB per device (temporaries), largest array in the per-device program")
  print("| objective | impl | " + " | ".join(f"B={b}" for b in batches) + " |")
  print("|---|---|" + "---|" * len(batches))
  for name in ARGS.objectives.split(","):
    cfg = ConfigDict({term: {"weight": 1.0, **objectives.option_defaults(term), **opts}
                      for term, opts in SETUPS[name].items()})
    for impl in ARGS.impls.split(","):
      program = lp.LossProgram(cfg, mesh, impl, DIMS)
      cells = []
      for batch in batches:
        start = time.perf_counter()
        compiled = program.compile(batch)
        temp = lp.memory_bytes(compiled)["temp"]
        _, shape = lp.largest_buffer(compiled)
        cells.append(f"{mib(temp)} ({shape})")
        print(f"  {name} {impl} B={batch}: compiled in {time.perf_counter() - start:.1f}s",
              file=sys.stderr, flush=True)
      print(f"| {name} | {impl} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
