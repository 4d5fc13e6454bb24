"""Per-device memory of the compiled train step for each rematerialisation policy, and with
gradient accumulation.

    python benchmarks/remat_memory.py [--config=configs/clip.py:model=B/16,batch=4096]
                                      [--devices=8] [--microbatches=1,4]

Compiles (never runs) the full train step (towers, loss, gradients, AdamW) on simulated CPU
devices and prints XLA's memory analysis per device: temporaries (activations kept for the
backward pass and working memory) next to the state (parameters and optimizer moments).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/clip.py:model=B/16,batch=1024")
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--policies", default="none,dots,dots_no_batch,full")
  parser.add_argument("--microbatches", default="1,4")
  parser.add_argument("--dtype", default="bfloat16")
  return parser.parse_args()


ARGS = parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lang_image import config as config_lib, parallel  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402


def abstract_batch(config, sharding):
  b, size = config.batch_size, config.model.image_size
  return {"image": jax.ShapeDtypeStruct((b, size, size, 3), jnp.uint8, sharding=sharding),
          "text": jax.ShapeDtypeStruct((b, config.model.max_len), jnp.int32, sharding=sharding)}


def main():
  base = config_lib.load_config_file(ARGS.config)
  print(f"# {ARGS.config}, dtype {ARGS.dtype}, {jax.device_count()} simulated devices, "
        f"jax {jax.__version__}; GiB per device")
  print("| remat | microbatches | temporaries | state |")
  print("|---|---|---|---|")
  for policy in ARGS.policies.split(","):
    for k in (int(m) for m in ARGS.microbatches.split(",")):
      config = base.copy_and_resolve_references()
      config.model.update(remat=policy, dtype=ARGS.dtype)
      config.microbatches = k
      mesh = parallel.make_mesh(config.mesh)
      trainer = Trainer(config, mesh, vocab_size=32000)
      compiled = trainer.train_step.lower(
          trainer.abstract_state, abstract_batch(config, trainer.batch_sharding)).compile()
      analysis = compiled.memory_analysis()
      print(f"| {policy} | {k} | {analysis.temp_size_in_bytes / 2 ** 30:.2f} | "
            f"{analysis.argument_size_in_bytes / 2 ** 30:.2f} |", flush=True)


if __name__ == "__main__":
  main()
