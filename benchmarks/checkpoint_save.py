"""What checkpoint checksums cost the default run's saves, on this machine.

    python benchmarks/checkpoint_save.py [--config=configs/xclip.py] [--rounds=7] [--json]

The default run's train state (configs/xclip.py: ViT mu/8 and text towers, CLIP + nCLIP
heads, AdamW state; vocabulary 1000 of the embedded data), initialised once on one device,
is saved in alternating rounds (the order turns each round, so that load from other
processes falls on every variant alike) by:

  before     Orbax alone as checkpoints were saved before checksums: state + data position,
             directories made in Orbax's background thread
  no_sums    the same with directories made in the save call (as lang_image.checkpoint now
             does, so that a folder that cannot be written fails there)
  checksums  lang_image.checkpoint.Checkpointer.maybe_save: checksums of every array on its
             devices, then the no_sums save plus the small JSON record

Each figure is the median over rounds of `blocking_s`, the time the training loop waits (the
call returns and the loop goes on while Orbax writes), and `total_s`, until the checkpoint is
complete on disk. Also reported: the checksum pass alone, the one-time compilation of the
checksum programs (a run does it in a background thread while the train step compiles), and
a train step of the default run (batch 128) for scale. Nothing is asserted: the machine may
be shared, so compare only figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from lang_image import checkpoint, checkpoint_integrity, parallel  # noqa: E402
from lang_image.data import pipeline  # noqa: E402
from lang_image.config import load_config_file  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402

VOCAB = 1000


def _orbax_saver(directory: str, sync_directories: bool):
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=True)
  if sync_directories:
    options.async_options = ocp.AsyncOptions(create_directories_asynchronously=False)
  manager = ocp.CheckpointManager(directory, options=options)

  def save(step, state, data):
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               data=ocp.args.JsonSave(data)), force=True)
  return save, manager.wait_until_finished, manager.close


def _checkpointer_saver(directory: str, abstract_state):
  ckpt = checkpoint.Checkpointer(directory, every=1, keep=2)
  ckpt.prepare_to_save(abstract_state)

  def save(step, state, data):
    ckpt.maybe_save(step, state, data, force=True)
  return save, ckpt.wait, ckpt.close


def _median(values):
  return statistics.median(values) if values else float("nan")


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "xclip.py"))
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=3, help="train steps timed for scale")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args(argv)

  config = load_config_file(args.config)
  mesh = parallel.make_mesh(config.mesh, devices=jax.devices()[:1])
  trainer = Trainer(config, mesh, VOCAB)
  state = trainer.init_state(config.seed)
  jax.block_until_ready(state)
  report = {"machine": platform.processor() or platform.machine(), "config": args.config,
            "state_mib": sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20,
            "arrays": len(jax.tree.leaves(state)), "rounds": args.rounds}

  start = time.perf_counter()
  summarizer = checkpoint_integrity.Summarizer(trainer.abstract_state)
  summarizer.summarize(state)
  report["checksum_compile_s"] = time.perf_counter() - start
  times = []
  for _ in range(args.rounds):
    start = time.perf_counter()
    summarizer.summarize(state)
    times.append(time.perf_counter() - start)
  report["checksum_pass_s"] = _median(times)

  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (config.batch_size, config.model.image_size,
                                          config.model.image_size, 3), dtype=np.uint8),
           "text": rng.integers(3, VOCAB, (config.batch_size, config.model.max_len),
                                dtype=np.int32)}
  batch = pipeline.to_global(batch, trainer.batch_sharding)
  stepped = jax.tree.map(lambda x: x.copy(), state)
  with jax.set_mesh(mesh):
    stepped, _ = trainer.train_step(stepped, batch)  # Compiles.
    jax.block_until_ready(stepped)
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      stepped, metrics = trainer.train_step(stepped, batch)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  report["train_step_s"] = _median(times)

  with tempfile.TemporaryDirectory() as tmp:
    savers = {
        "before": _orbax_saver(os.path.join(tmp, "before"), sync_directories=False),
        "no_sums": _orbax_saver(os.path.join(tmp, "no_sums"), sync_directories=True),
        "checksums": _checkpointer_saver(os.path.join(tmp, "checksums"),
                                         trainer.abstract_state),
    }
    blocking = {name: [] for name in savers}
    total = {name: [] for name in savers}
    order = list(savers)
    for step in range(1, args.rounds + 2):  # Round 1 warms up and is not counted.
      for name in order:
        save, wait, _ = savers[name]
        start = time.perf_counter()
        save(step, state, {"next_batch": step})
        returned = time.perf_counter()
        wait()
        if step > 1:
          blocking[name].append(returned - start)
          total[name].append(time.perf_counter() - start)
      order = order[1:] + order[:1]
    for _, _, close in savers.values():
      close()
  report["saves"] = {name: {"blocking_s": _median(blocking[name]),
                            "total_s": _median(total[name])} for name in savers}

  if args.json:
    print(json.dumps(report, indent=1))
  else:
    print(f"{report['config']}: {report['arrays']} arrays, {report['state_mib']:.1f} MiB; "
          f"train step {report['train_step_s']:.3f} s; checksum pass "
          f"{report['checksum_pass_s']:.3f} s (compiled once in {report['checksum_compile_s']:.1f}"
          " s)")
    print("| save | blocking s | total s |\n|---|---|---|")
    for name, figures in report["saves"].items():
      print(f"| {name} | {figures['blocking_s']:.3f} | {figures['total_s']:.3f} |")
  return report


if __name__ == "__main__":
  main()
