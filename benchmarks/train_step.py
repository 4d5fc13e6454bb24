"""Throughput and MFU of the training step, side by side with a PyTorch peer.

    python benchmarks/train_step.py [--model=bench] [--batch=64] [--objective=clip]
        [--precision=float32,bf16_f32acc] [--torch=float32,bf16_autocast]
        [--repeats=10] [--attention=xla|cudnn|auto] [--remat=none] [--compile_only] [--profile] [--json]

For each variant (precision x objective) it builds `trainer.Trainer` on one device and
measures, in one process: the step's compile time, its step time (median over rounds after
warm-up), image-text pairs/s, the model FLOPs of a step (XLA's cost analysis of the
compiled step, and an analytic count of the towers' matmuls and the CLIP logits), the
matmul peak of the same device (float32, and bf16 inputs with float32 accumulation when a
bf16 variant runs) measured in the same rounds, MFU against those peaks, and memory (XLA's
memory analysis of each compiled step; the device's peak bytes in use on GPU, the process's
peak RSS on CPU). `--torch` adds Hugging Face transformers' CLIPModel at identical
dimensions, batch and precision (benchmarks/torch_peer.py), one full training step each
(forward, loss, backward, clipping, AdamW). Every round runs every variant in turn, in
alternating order, so that a noisy machine slows all of them alike; ratios are taken inside
the run. Each variant's timed step follows `--settle` untimed steps of its own: the first
step after another variant's is slower, by an amount that depends on the order.

Precisions (lang_image): float32; bfloat16 (config.model.dtype = bfloat16: matmuls and the
residual stream in bf16); bf16_f32acc (dtype float32, config.model.matmul_precision =
bf16_f32acc: bf16 matmul inputs, float32 accumulation and results, forward and backward).
PyTorch: float32; bf16_autocast (torch.autocast(bfloat16)).

Models (--model): "bench", the CPU benchmark model (ViT 64 px, patch 8, width 256, depth 6,
4 heads, MLP 1024; text 32 tokens, width 256, depth 6; embedding 256; vocabulary 32000);
"B/16", ViT-B/16 at 224 px with the 12-layer 512-wide text tower over 77 tokens
(embedding 512, vocabulary 49408); "smoke", a toy for benchmarks/device_check.sh --smoke.
`--objective=clip,nclip,xclip,rankclip` times each
objective and reports its step time relative to the first.

`--compile_only` compiles every variant from abstract shapes (nothing is allocated or run)
and reports the compile times; set no persistent compilation cache for it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import sys
import time
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/, and this checkout's lang_image
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_peer

PRESETS = {
    "bench": dict(arg_model="mu/8", image="w256-d6-h4-mlp1024/8", text="w256-d6-h4-mlp1024",
                  image_size=64, max_len=32, embed_dim=256, vocab_size=32000),
    "B/16": dict(arg_model="B/16", image="B/16", text="B", image_size=224, max_len=77,
                 embed_dim=512, vocab_size=49408),
    # benchmarks/device_check.sh --smoke: every code path in seconds on a CPU.
    "smoke": dict(arg_model="mu/8", image="w64-d2-h2-mlp128/8", text="w64-d2-h2-mlp128",
                  image_size=32, max_len=16, embed_dim=64, vocab_size=1000),
}
PRECISIONS = {  # name -> (config.model.dtype, config.model.matmul_precision)
    "float32": ("float32", "default"),
    "bfloat16": ("bfloat16", "default"),
    "bf16_f32acc": ("float32", "bf16_f32acc"),
}
TORCH_PRECISIONS = ("float32", "bf16_autocast")
OBJECTIVES = ("clip", "siglip", "nclip", "xclip", "rankclip", "cliplite")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="bench", choices=sorted(PRESETS))
  p.add_argument("--batch", type=int, default=64, help="image-text pairs per step")
  p.add_argument("--objective", default="clip",
                 help="comma-separated configs/<objective>.py; overheads relative to the first")
  p.add_argument("--precision", default="float32,bf16_f32acc",
                 help=f"comma-separated lang_image precisions: {', '.join(PRECISIONS)}")
  p.add_argument("--torch", default="",
                 help="comma-separated PyTorch peer precisions (float32, bf16_autocast); "
                      "empty: no comparison")
  p.add_argument("--attention", default="",
                 help="config.model.attention: xla, cudnn or auto (models/attention_kernels.py); "
                      "empty: the config's")
  p.add_argument("--remat", default="none", help="config.model.remat")
  p.add_argument("--variants", default="",
                 help="instead of --precision: ';'-separated variants, each a precision "
                      "followed by config.model overrides or BASELINES keys, e.g. "
                      "'bf16_f32acc;bf16_f32acc,act=gelu_tanh;bf16_f32acc,norm=autodiff'")
  p.add_argument("--repeats", type=int, default=10, help="timed rounds")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
  p.add_argument("--settle", type=int, default=1,
                 help="untimed steps of a variant right before each of its timed steps: the "
                      "first step after another variant's ran measured 5-10%% slower")
  p.add_argument("--compile_only", action="store_true",
                 help="only compile each variant (abstract shapes) and report the times")
  p.add_argument("--profile", action="store_true",
                 help="after the timed rounds, trace 3 steps of each lang_image variant and "
                      "report op time by HLO op kind (benchmarks/step_profile.py)")
  p.add_argument("--json", action="store_true", help="print one JSON object instead")
  p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before jax loads")
  args = p.parse_args(argv)
  args.precisions = [s for s in args.precision.split(",") if s]
  args.specs = [(p, {}) for p in args.precisions]
  if args.variants:
    args.specs = []
    for spec in args.variants.split(";"):
      precision, *overrides = spec.split(",")
      args.specs.append((precision, dict(o.split("=", 1) for o in overrides)))
    args.precisions = [p for p, _ in args.specs]
  args.objectives = [s for s in args.objective.split(",") if s]
  args.torch_precisions = [s for s in args.torch.split(",") if s]
  for s in args.precisions:
    if s not in PRECISIONS:
      p.error(f"unknown --precision {s!r}; known: {', '.join(PRECISIONS)}")
  for s in args.objectives:
    if s not in OBJECTIVES:
      p.error(f"unknown --objective {s!r}; known: {', '.join(OBJECTIVES)}")
  for s in args.torch_precisions:
    if s not in TORCH_PRECISIONS:
      p.error(f"unknown --torch {s!r}; known: {', '.join(TORCH_PRECISIONS)}")
  return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.xla_flags:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hlo  # noqa: E402  (benchmarks/hlo.py)
from lang_image import config as config_lib, parallel  # noqa: E402
from lang_image.data.tokenizer import EOS_ID  # noqa: E402
from lang_image.models import layers, matmul_precision, norms, variants  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402
import step_profile  # noqa: E402


# FLOPs.

def analytic_flops(preset: dict, batch: int) -> float:
  """Model FLOPs of one training step: 3x the forward matmuls (backward = 2x forward) of
  both towers (patch embedding, qkv / out / MLP projections, attention's two products over
  all T x T pairs, output projections) and the B x B CLIP logits. Elementwise work, the
  optimizer and the objective's heads are not counted (XLA's count includes them)."""
  vit = variants.parse_vit(preset["image"])
  text = variants.parse_text(preset["text"])
  grid = (preset["image_size"] // vit.patch) ** 2
  e = preset["embed_dim"]

  def tower(t, w, depth, mlp):
    per_block = 2 * t * (4 * w * w + 2 * w * mlp) + 2 * 2 * t * t * w
    return depth * per_block + 2 * w * e

  image = tower(grid + 1, vit.width, vit.depth, vit.mlp_dim) + 2 * grid * vit.patch ** 2 * 3 * vit.width
  txt = tower(preset["max_len"], text.width, text.depth, text.mlp_dim)
  forward = batch * (image + txt) + 2 * batch * batch * e
  return 3.0 * forward


# The device's matmul peak.

class MatmulPeak:
  """Best rate of one large matmul, float32 or bf16 x bf16 -> f32, on the default device."""

  def __init__(self, kind: str):
    gpu = jax.default_backend() == "gpu"
    m, k, n = (8192, 8192, 8192) if gpu else (4096, 1024, 1024)
    self.flops = 2.0 * m * k * n
    dtype = jnp.float32 if kind == "float32" else jnp.bfloat16
    key = jax.random.key(1)
    self.a = jax.random.normal(key, (m, k), jnp.float32).astype(dtype)
    self.b = jax.random.normal(jax.random.fold_in(key, 1), (k, n), jnp.float32).astype(dtype)
    self.fn = jax.jit(lambda a, b: jax.lax.dot_general(
        a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32))
    jax.block_until_ready(self.fn(self.a, self.b))

  def measure(self, tries: int = 3) -> float:
    """FLOP/s of the best of `tries` calls."""
    best = math.inf
    for _ in range(tries):
      start = time.perf_counter()
      jax.block_until_ready(self.fn(self.a, self.b))
      best = min(best, time.perf_counter() - start)
    return self.flops / best


# lang_image variants.

def build_config(preset: dict, objective: str, precision: str, batch: int, args,
                 overrides=None):
  config = config_lib.load_config_file(
      f"configs/{objective}.py:model={preset['arg_model']},batch={batch}")
  dtype, matmul_precision = PRECISIONS[precision]
  config.model.update(
      image=preset["image"], text=preset["text"], image_size=preset["image_size"],
      max_len=preset["max_len"], embed_dim=preset["embed_dim"], image_stem="patch",
      image_pool="cls", dtype=dtype, matmul_precision=matmul_precision, remat=args.remat)
  if args.attention:
    config.model.attention = args.attention
  for key, value in (overrides or {}).items():
    old = config.model.get(key)
    config.model[key] = type(old)(value) if old is not None else value
  config.mesh.update(data=1, fsdp=1)
  return config


# Variant keys that trace the step with an earlier implementation in place of the current
# one, to measure in the same run what each optimisation gives (benchmarks/RESULTS.md):
#   transposes=folded  plain transposes instead of matmul_precision.materialised_transpose, which
#                      XLA folds into the dots;
#   norm=autodiff      nnx.LayerNorm differentiated by autodiff instead of
#                      norms.layer_norm_f32's hand-written backward pass;
#   gelu=erfc          jax.nn.gelu(approximate=False), 0.5 x erfc(-x / sqrt 2), instead
#                      of layers.exact_gelu's erf form (the same function).

def _autodiff_norm(ln, x, dtype):
  return ln(x.astype(jnp.float32)).astype(dtype)


def _patch(name, value):
  """Replaces `name` in every model module that defines or imports it."""
  holders = [m for m in (layers, matmul_precision, norms) if hasattr(m, name)]

  def patches():
    stack = contextlib.ExitStack()
    for module in holders:
      stack.enter_context(mock.patch.object(module, name, value))
    return stack
  return patches


BASELINES = {
    "transposes": {"folded": _patch("materialised_transpose",
                                    lambda x, perm: jnp.transpose(x, perm))},
    "norm": {"autodiff": _patch("apply_norm", _autodiff_norm)},
    "gelu": {"erfc": lambda: mock.patch.dict(
        layers.ACTIVATIONS, {"gelu": lambda x: jax.nn.gelu(x, approximate=False)})},
}


class JaxVariant:
  def __init__(self, preset, objective, precision, args, overrides=None):
    self.name = (f"lang_image {precision}" + (f" {objective}" if len(args.objectives) > 1 else "")
                 + "".join(f" {k}={v}" for k, v in (overrides or {}).items()))
    self.kind, self.objective, self.precision = "lang_image", objective, precision
    overrides = dict(overrides or {})
    self.baselines = []
    for key in list(overrides):
      if key in BASELINES:
        value = overrides.pop(key)
        if value not in BASELINES[key]:
          raise SystemExit(f"unknown {key}={value}; known: {', '.join(BASELINES[key])}")
        self.baselines.append(BASELINES[key][value])
    self.config = build_config(preset, objective, precision, args.batch, args, overrides)
    self.mesh = parallel.make_mesh(self.config.mesh, devices=jax.devices()[:1])
    self.trainer = Trainer(self.config, self.mesh, preset["vocab_size"])
    size, length = preset["image_size"], preset["max_len"]
    self.abstract_batch = {
        "image": jax.ShapeDtypeStruct((args.batch, size, size, 3), jnp.uint8,
                                      sharding=self.trainer.batch_sharding),
        "text": jax.ShapeDtypeStruct((args.batch, length), jnp.int32,
                                     sharding=self.trainer.batch_sharding)}
    self.times = []

  def compile(self):
    with contextlib.ExitStack() as patches, jax.set_mesh(self.mesh):
      for baseline in self.baselines:
        patches.enter_context(baseline())
      start = time.perf_counter()
      lowered = self.trainer.train_step.lower(self.trainer.abstract_state, self.abstract_batch)
      self.lower_s = time.perf_counter() - start
      start = time.perf_counter()
      self.compiled = lowered.compile()
      self.compile_s = time.perf_counter() - start
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    self.dots = hlo.dot_census(self.compiled.as_text())
    mem = self.compiled.memory_analysis()
    self.xla_bytes = None if mem is None else int(
        mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        - mem.alias_size_in_bytes)

  def prepare(self, preset, batch, seed=0):
    rng = np.random.default_rng(seed)
    size, length = preset["image_size"], preset["max_len"]
    text = rng.integers(3, preset["vocab_size"], (batch, length), dtype=np.int32)
    text[:, -1] = EOS_ID
    local = {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
             "text": text}
    self.batch = jax.device_put(local, self.trainer.batch_sharding)
    self.state = self.trainer.init_state(self.config.seed)

  def timed_step(self) -> float:
    with jax.set_mesh(self.mesh):
      start = time.perf_counter()
      self.state, metrics = self.compiled(self.state, self.batch)
      jax.block_until_ready((self.state, metrics))
      elapsed = time.perf_counter() - start
    self.last_loss = float(metrics["loss"])
    return elapsed


class TorchVariant:
  def __init__(self, preset, precision, args):
    import torch_peer
    vit = variants.parse_vit(preset["image"])
    text = variants.parse_text(preset["text"])
    dims = torch_peer.PeerDims(
        image_size=preset["image_size"], patch=vit.patch, image_width=vit.width,
        image_depth=vit.depth, image_heads=vit.heads, image_mlp=vit.mlp_dim,
        text_len=preset["max_len"], text_width=text.width, text_depth=text.depth,
        text_heads=text.heads, text_mlp=text.mlp_dim, vocab_size=preset["vocab_size"],
        embed_dim=preset["embed_dim"])
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    self.peer = torch_peer.TorchClipStep(dims, args.batch, precision, device=device)
    self.name = f"torch {precision}"
    self.kind, self.objective, self.precision = "torch", "clip", precision
    self.times = []
    self.compile_s = self.lower_s = float("nan")
    self.xla_flops = float("nan")
    self.xla_bytes = None
    self.dots = None

  def timed_step(self) -> float:
    start = time.perf_counter()
    self.last_loss = self.peer.step()
    return time.perf_counter() - start


# Reporting.

def machine() -> str:
  dev = jax.devices()[0]
  if dev.platform != "cpu":
    return f"{dev.device_kind} ({dev.platform})"
  model = platform.processor() or "CPU"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"{model}, {os.cpu_count()} cores"


def device_peak_bytes():
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device peak bytes in use"
  rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss_kib) * 1024, "process peak RSS"


def versions() -> dict:
  import flax
  import jaxlib
  out = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
         "python": platform.python_version()}
  return out


def fmt(x, spec):
  return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main():
  args = ARGS
  preset = PRESETS[args.model]
  flops = analytic_flops(preset, args.batch)
  runs = [JaxVariant(preset, o, p, args, overrides)
          for o in args.objectives for p, overrides in args.specs]
  for run in runs:
    run.compile()
    print(f"# compiled {run.name}: trace + lower {run.lower_s:.1f} s, compile "
          f"{run.compile_s:.1f} s", file=sys.stderr, flush=True)

  result = {
      "date": datetime.date.today().isoformat(), "machine": machine(),
      "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
      "versions": versions(), "model": args.model, "batch": args.batch,
      "analytic_flops_per_step": flops, "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
  if args.compile_only:
    result["variants"] = [dict(name=r.name, objective=r.objective, precision=r.precision,
                               trace_lower_s=r.lower_s, compile_s=r.compile_s,
                               xla_flops=r.xla_flops, xla_bytes=r.xla_bytes, dots=r.dots)
                          for r in runs]
    report(result, args, compile_only=True)
    return

  if args.torch_precisions:
    try:
      peers = [TorchVariant(preset, p, args) for p in args.torch_precisions]
    except ImportError as e:
      sys.exit(f"train_step.py: {e}")
    result["versions"].update(peers[0].peer.versions())
    runs += peers
  for run in runs:
    if run.kind == "lang_image":
      run.prepare(preset, args.batch)
    for _ in range(args.warmup):
      run.timed_step()
  peaks = {"float32": MatmulPeak("float32")}
  if any(p != "float32" for p in args.precisions):
    peaks["bf16_f32acc"] = MatmulPeak("bf16")
  peak_rates = {k: [] for k in peaks}
  for r in range(args.repeats):
    for k, peak in peaks.items():
      peak_rates[k].append(peak.measure())
    order = runs if r % 2 == 0 else runs[::-1]
    for run in order:
      for _ in range(args.settle):
        run.timed_step()
      run.times.append(run.timed_step())
    print(f"# round {r + 1}/{args.repeats}: " + ", ".join(
        f"{run.name} {run.times[-1]:.3f} s" for run in runs), file=sys.stderr, flush=True)

  peak = {k: float(np.median(v)) for k, v in peak_rates.items()}
  peak_bytes, peak_kind = device_peak_bytes()
  result.update(peak_flops=peak, peak_flops_all=peak_rates, peak_memory_bytes=peak_bytes,
                peak_memory_kind=peak_kind, repeats=args.repeats, warmup=args.warmup,
                settle=args.settle)
  rows = []
  torch_best = min((float(np.median(r.times)) for r in runs if r.kind == "torch"),
                   default=None)
  base = {}
  for run in runs:
    step = float(np.median(run.times))
    if run.kind == "lang_image" and run.name.split(" ")[1] not in base:
      base[run.name.split(" ")[1]] = step  # the first objective of this precision
    row = dict(name=run.name, kind=run.kind, objective=run.objective, precision=run.precision,
               step_s=step, step_s_min=float(np.min(run.times)),
               step_s_max=float(np.max(run.times)), times=run.times,
               pairs_per_s=args.batch / step, trace_lower_s=run.lower_s,
               compile_s=run.compile_s, xla_flops=run.xla_flops, analytic_flops=flops,
               achieved_flops_per_s=flops / step,
               mfu_f32_peak=flops / step / peak["float32"],
               mfu_bf16_peak=(flops / step / peak["bf16_f32acc"]
                              if "bf16_f32acc" in peak else None),
               xla_bytes=run.xla_bytes, dots=run.dots, final_loss=run.last_loss)
    if torch_best is not None:
      row["speedup_vs_fastest_torch"] = torch_best / step
    if run.kind == "lang_image":
      row["step_vs_first_objective"] = step / base[run.name.split(" ")[1]]
    rows.append(row)
  result["variants"] = rows
  if args.profile:
    result["profile"] = {}
    for run in runs:
      if run.kind == "lang_image":
        by_kind = step_profile.op_time_by_kind(run.timed_step, run.compiled.as_text())
        result["profile"][run.name] = by_kind
        print(step_profile.format_profile(run.name, by_kind), file=sys.stderr, flush=True)
  report(result, args)


def report(result, args, compile_only=False):
  if args.json:
    print(json.dumps(result, indent=1, default=float))
    return
  v = ", ".join(f"{k} {val}" for k, val in result["versions"].items())
  print(f"# {result['date']}, {result['machine']}; {v}")
  print(f"# {result['command']}")
  if result["xla_flags"]:
    print(f"# XLA_FLAGS={result['xla_flags']}")
  print(f"# model {result['model']}, batch {result['batch']}; analytic model FLOPs per "
        f"step {result['analytic_flops_per_step'] / 1e9:.1f} G")
  if compile_only:
    print("| variant | trace + lower (s) | compile (s) | XLA GFLOP/step | XLA memory (MiB) "
          "| dots in the compiled step |")
    print("|---|---|---|---|---|---|")
    for r in result["variants"]:
      mem = "" if r["xla_bytes"] is None else f"{r['xla_bytes'] / 2**20:,.0f}"
      dots = ", ".join(f"{n} {k}" for k, n in sorted((r.get("dots") or {}).items()))
      print(f"| {r['name']} | {r['trace_lower_s']:.1f} | {r['compile_s']:.1f} | "
            f"{r['xla_flops'] / 1e9:.1f} | {mem} | {dots} |")
    return
  peak = result["peak_flops"]
  print(f"# matmul peak, median over {result['repeats']} rounds of the best of 3: float32 "
        f"{peak['float32'] / 1e9:.0f} GFLOP/s" + (
            f", bf16 x bf16 -> f32 {peak['bf16_f32acc'] / 1e9:.0f} GFLOP/s"
            if "bf16_f32acc" in peak else ""))
  print(f"# {result['peak_memory_kind']}: {result['peak_memory_bytes'] / 2**20:,.0f} MiB; "
        f"step times: median (min-max) over {result['repeats']} alternating rounds after "
        f"{result['warmup']} warm-up steps, each timed step after {result['settle']} untimed")
  has_torch = any(r["kind"] == "torch" for r in result["variants"])
  multi_obj = len({r["objective"] for r in result["variants"] if r["kind"] == "lang_image"}) > 1
  head = ("| variant | compile (s) | step (s) | pairs/s | XLA GFLOP | model GFLOP | "
          "MFU vs f32 peak | MFU vs bf16 peak | XLA memory (MiB) |")
  head += " vs fastest torch |" if has_torch else ""
  head += " step vs first objective |" if multi_obj else ""
  print(head)
  print("|---" * (head.count("|") - 1) + "|")
  for r in result["variants"]:
    mem = "" if r["xla_bytes"] is None else f"{r['xla_bytes'] / 2**20:,.0f}"
    line = (f"| {r['name']} | {fmt(r['compile_s'], '.1f')} | {r['step_s']:.3f} "
            f"({r['step_s_min']:.3f}-{r['step_s_max']:.3f}) | {r['pairs_per_s']:.1f} | "
            f"{fmt(r['xla_flops'] / 1e9, '.1f')} | {r['analytic_flops'] / 1e9:.1f} | "
            f"{100 * r['mfu_f32_peak']:.0f}% | "
            f"{fmt(None if r['mfu_bf16_peak'] is None else 100 * r['mfu_bf16_peak'], '.0f')}"
            f"{'%' if r['mfu_bf16_peak'] is not None else ''} | {mem} |")
    if has_torch:
      line += f" {r['speedup_vs_fastest_torch']:.2f}x |"
    if multi_obj:
      line += f" {fmt(r.get('step_vs_first_objective'), '.3f')} |"
    print(line)


if __name__ == "__main__":
  main()
