"""Compiles the training step ahead of time for a TPU topology, on this CPU machine.

    python benchmarks/aot_compile.py --topology=v5e:16x16 \\
        --config=configs/clip.py:model=B/16,batch=32768 [--config.model.dtype=bfloat16 ...] \\
        [--layout=data,fsdp] [--remat=none,full] [--json=out.jsonl]

Needs libtpu (`pip install -e '.[tpu]'`, or `pip install --target DIR libtpu==0.0.42.1` and
PYTHONPATH=DIR to keep it out of the environment): `jax.experimental.topologies` then describes
the topology's chips without any being present, and the step is lowered and compiled for a
mesh of them, as MaxText's train_compile.py and AxLearn's run_aot_compilation.py do.

What is compiled is what main.py runs: the config file and its overrides are validated by
`config.validate`, and `trainer.Trainer` builds the model, objective terms, optimizer, state
shardings and jitted step from it; only the devices differ. Each --config, --topology,
--layout and --remat value multiplies the cases; they compile one after another in this
process. A layout sets config.mesh: `data` = (data=-1, fsdp=1), `fsdp` = (data=1, fsdp=-1),
`config` keeps the config's own mesh.

Per chip it reports XLA's memory analysis (arguments, outputs, temporaries; the total against
the chip's HBM), XLA's FLOP count, the step time of XLA's TPU cost model (`optimal_seconds`)
and the MFU that time implies against the chip's peak bf16 rate (CHIPS). The cost model is an
estimate from the compiled program, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/, and this checkout's lang_image
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # libtpu must not look for a real TPU here.
# No TPU is opened, so several compiling processes need not exclude each other (libtpu's
# /tmp/libtpu_lockfile would make a second one fail).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Peak dense bf16 FLOP/s, HBM bytes and HBM bandwidth (bytes/s) per chip, by jax's
# device_kind, from Google Cloud's TPU system architecture pages.
CHIPS = {
    "TPU v4": dict(name="v4", peak_bf16=275e12, hbm=32 * 2**30, hbm_bw=1200e9,
                   source="https://cloud.google.com/tpu/docs/v4"),
    "TPU v5 lite": dict(name="v5e", peak_bf16=197e12, hbm=16e9, hbm_bw=819e9,
                        source="https://cloud.google.com/tpu/docs/v5e"),
    "TPU v5": dict(name="v5p", peak_bf16=459e12, hbm=95e9, hbm_bw=2765e9,
                   source="https://cloud.google.com/tpu/docs/v5p"),
    "TPU v6 lite": dict(name="v6e", peak_bf16=918e12, hbm=32e9, hbm_bw=1640e9,
                        source="https://cloud.google.com/tpu/docs/v6e"),
}
HBM_BW = {c["name"]: c["hbm_bw"] for c in CHIPS.values()}
LAYOUTS = {"data": dict(data=-1, fsdp=1), "fsdp": dict(data=1, fsdp=-1), "config": None}


class AotError(Exception):
  """A bad argument or a missing libtpu; one sentence."""


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--from_json", default="", help="print the table of the cases saved in this "
                 "--json file instead of compiling")
  p.add_argument("--topology", action="append",
                 help="TPU topology, e.g. v5e:16x16, v5p:4x4x8 (repeat for several)")
  p.add_argument("--config", action="append",
                 help="config file with its arg string, e.g. configs/clip.py:model=B/16 "
                      "(repeat for several)")
  p.add_argument("--layout", default="config", help=f"comma-separated: {', '.join(LAYOUTS)}")
  p.add_argument("--remat", default="", help="comma-separated config.model.remat values; "
                                             "empty: the config's")
  p.add_argument("--json", default="", help="append one JSON object per case to this file")
  args, rest = p.parse_known_args(argv)
  args.overrides = []
  for item in rest:
    if not item.startswith("--config.") or "=" not in item:
      raise AotError(f"unknown argument '{item}'; field overrides are written "
                     "--config.a.b=value.")
    args.overrides.append(item[len("--config."):].split("=", 1))
  args.layouts = [s for s in args.layout.split(",") if s]
  for layout in args.layouts:
    if layout not in LAYOUTS:
      raise AotError(f"unknown --layout '{layout}'; use one of {list(LAYOUTS)}.")
  args.remats = [s for s in args.remat.split(",") if s] or [None]
  if not args.from_json and not (args.topology and args.config):
    raise AotError("give --topology and --config (or --from_json=FILE to print a saved table).")
  return args


def topology_devices(name: str):
  """The abstract devices of a TPU topology (libtpu describes them; none need be present)."""
  from jax.experimental import topologies
  try:
    import libtpu  # noqa: F401
  except ImportError:
    raise AotError("libtpu is not importable, so TPU topologies cannot be described; install "
                   "it with pip install -e '.[tpu]', or into a separate directory with "
                   "pip install --target DIR libtpu==0.0.42.1 and run with PYTHONPATH=DIR."
                   ) from None
  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=name).devices
  except Exception as e:  # noqa: BLE001 (libtpu raises assorted errors for bad names)
    raise AotError(f"topology '{name}' is not known to libtpu ({str(e).splitlines()[0]}); "
                   "write it as generation:shape, e.g. v5e:16x16 or v5p:4x4x8.") from None


def set_field(config, path: str, raw: str) -> None:
  """`--config.a.b=raw`, typed like the field it replaces (as main.py's overrides are)."""
  from lang_image import config as config_lib
  message = config_lib.explain_override(config, f"{path}={raw}")
  if message:
    raise AotError(message)
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node[part]
  old = node[leaf]
  if isinstance(old, bool):
    value = raw.lower() in ("true", "1")
  elif isinstance(old, (int, float)):
    value = type(old)(raw)
  else:
    value = raw
  node[leaf] = value


def build_config(spec: str, overrides, layout: str, remat: str | None):
  from lang_image import config as config_lib
  config = config_lib.load_config_file(spec)
  for path, raw in overrides:
    set_field(config, path, raw)
  if LAYOUTS[layout] is not None:
    config.mesh.update(LAYOUTS[layout])
  if remat is not None:
    config.model.remat = remat
  return config


def _compile(config, devices):
  """The jitted training step of `config` on a mesh of `devices`, compiled -> (compiled,
  seconds). What main.py runs: config.validate, then trainer.Trainer's step."""
  import jax
  import jax.numpy as jnp
  from lang_image import config as config_lib, parallel
  from lang_image.trainer import Trainer

  config_lib.validate(config, None, device_count=len(devices), platform="tpu")
  mesh = parallel.make_mesh(config.mesh, devices=devices)
  trainer = Trainer(config, mesh, int(config.data.vocab_size))
  size, length, batch = config.model.image_size, config.model.max_len, config.batch_size
  abstract_batch = {  # What the training stream yields (data/stream.py).
      "image": jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8,
                                    sharding=trainer.batch_sharding),
      "text": jax.ShapeDtypeStruct((batch, length), jnp.int32, sharding=trainer.batch_sharding)}
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = trainer.train_step.lower(trainer.abstract_state, abstract_batch).compile()
  return compiled, time.perf_counter() - start


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def compile_case(spec: str, overrides, topology: str, layout: str, remat: str | None) -> dict:
  """Compiles one case's training step -> its figures, per chip.

  libtpu 0.0.42.1's cost model can give a step a negative `optimal_seconds` on v5e (measured:
  a small CLIP on v5e:2x2 is positive with a 1000-row text vocabulary and negative with 32000
  rows, whatever the embedding's gather mode; ViT-B/16 steps on v5e are negative even with
  1024 rows, and positive on v5p). A negative time is reported as it is, and implies no MFU."""
  devices = topology_devices(topology)
  kind = devices[0].device_kind
  chip = CHIPS.get(kind)
  if chip is None:
    raise AotError(f"no peak rate is known for '{kind}'; add it to CHIPS in "
                   "benchmarks/aot_compile.py.")
  config = build_config(spec, overrides, layout, remat)
  compiled, compile_s = _compile(config, devices)
  # libtpu may describe a chip as several devices (one per TensorCore): per-device figures
  # (XLA's analyses are per SPMD partition) times devices per chip give per-chip ones.
  chips = len({tuple(d.coords) for d in devices})
  per_chip = len(devices) // chips
  mem, cost = compiled.memory_analysis(), _cost(compiled)
  arguments = per_chip * mem.argument_size_in_bytes
  outputs = per_chip * mem.output_size_in_bytes
  aliased = per_chip * mem.alias_size_in_bytes
  temporary = per_chip * mem.temp_size_in_bytes
  total = arguments + outputs - aliased + temporary
  flops = per_chip * float(cost["flops"])
  hbm_traffic = per_chip * float(cost.get("bytes accessed", float("nan")))
  seconds = float(cost["optimal_seconds"])
  data, fsdp = _mesh_sizes(config, len(devices))
  return dict(
      config=spec, overrides=[f"--config.{p}={v}" for p, v in overrides], topology=topology,
      chip=chip["name"], chips=chips, devices_per_chip=per_chip, mesh=f"data={data},fsdp={fsdp}",
      layout=layout, remat=config.model.remat, dtype=config.model.dtype, batch=config.batch_size,
      objectives=sorted(config.objectives.keys()), compile_s=compile_s,
      argument_bytes=arguments, output_bytes=outputs, alias_bytes=aliased,
      temp_bytes=temporary, total_bytes=total, hbm_bytes=chip["hbm"],
      fits=total <= chip["hbm"], flops=flops, bytes_accessed=hbm_traffic,
      optimal_seconds=seconds,
      peak_bf16=chip["peak_bf16"],
      mfu=flops / seconds / chip["peak_bf16"] if seconds > 0 else float("nan"),
      pairs_per_s=config.batch_size / seconds if seconds > 0 else float("nan"))


def _mesh_sizes(config, device_count: int) -> tuple[int, int]:
  from lang_image import parallel
  return parallel.mesh_shape(config.mesh, device_count)


HEADER = ("| config | topology | mesh | remat | args GiB | out GiB | temp GiB | total / HBM GiB "
          "| TFLOP | cost-model step (s) | MFU | pairs/s | roofline (s) |\n"
          + "|---" * 13 + "|")


def roofline_seconds(r: dict) -> float:
  """The roofline model's step time: the longer of the FLOPs at the chip's peak and XLA's
  bytes accessed (the compiled program's HBM traffic, counted at op and fusion boundaries)
  at the chip's HBM bandwidth. It takes no cost model, so it exists where libtpu's is
  negative; an op that neither saturates compute nor bandwidth makes the real step longer."""
  return max(r["flops"] / r["peak_bf16"], r["bytes_accessed"] / HBM_BW[r["chip"]])


def row(r: dict) -> str:
  gib = lambda b: f"{b / 2**30:.2f}"
  name = os.path.basename(r["config"].partition(":")[0]).removesuffix(".py")
  seconds = (f"{r['optimal_seconds']:.3f}" if r["optimal_seconds"] > 0
             else f"negative ({r['optimal_seconds']:.0f})")
  valid = r["optimal_seconds"] > 0
  mfu = f"{100 * r['mfu']:.0f}%" if valid else ""
  rate = f"{r['pairs_per_s']:,.0f}" if valid else ""
  return (f"| {name} | {r['topology']} | {r['mesh']} | {r['remat']} | "
          f"{gib(r['argument_bytes'])} | {gib(r['output_bytes'])} | {gib(r['temp_bytes'])} | "
          f"{gib(r['total_bytes'])} / {gib(r['hbm_bytes'])}{'' if r['fits'] else ' (over)'} | "
          f"{r['flops'] / 1e12:.2f} | {seconds} | {mfu} | {rate} | "
          f"{roofline_seconds(r):.3f} |")


def main(argv=None) -> int:
  try:
    args = parse_args(sys.argv[1:] if argv is None else argv)
  except AotError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.from_json:
    with open(args.from_json) as f:
      print(HEADER + "\n" + "\n".join(row(json.loads(line)) for line in f if line.strip()))
    return 0
  import jax
  from lang_image.errors import ConfigError
  print(f"# jax {jax.__version__}; per chip. Step time: XLA's TPU cost model (optimal_seconds; "
        "see compile_case for negative ones); MFU = XLA FLOPs / that time / the chip's peak "
        "bf16 rate; pairs/s of the whole slice at that time; roofline = max(FLOPs / peak, "
        "XLA's bytes accessed / HBM bandwidth)")
  print("# " + " ".join(["python", "benchmarks/aot_compile.py", *(sys.argv[1:] if argv is None
                                                                   else argv)]))
  print(HEADER, flush=True)
  for spec in args.config:
    for topology in args.topology:
      for layout in args.layouts:
        for remat in args.remats:
          try:
            result = compile_case(spec, args.overrides, topology, layout, remat)
          except (AotError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
          print(row(result), flush=True)
          print(f"#   compiled in {result['compile_s']:.0f} s", file=sys.stderr, flush=True)
          if args.json:
            with open(args.json, "a") as f:
              f.write(json.dumps(result) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
