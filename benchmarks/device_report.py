"""Markdown tables from benchmarks/device_check.sh's output directory.

    python benchmarks/device_report.py DIR > DIR/report.md

Reads DIR/largest_batch.json, attention.json, objectives.json and remat.json (the JSON of
largest_batch.py and train_step.py --json); a stage whose JSON is missing or empty is named
as failed, with its log. Exits 1 if any stage failed.
"""

from __future__ import annotations

import json
import os
import sys

GIB = 2 ** 30


def load(directory: str, name: str):
  path = os.path.join(directory, f"{name}.json")
  try:
    with open(path) as f:
      text = f.read().strip()
    return json.loads(text.splitlines()[-1] if name == "largest_batch" else text)
  except (OSError, ValueError, IndexError):
    return None


def failed(name: str) -> str:
  return f"**{name}: no result** (see {name}.log in the output directory)\n"


def steps_table(report: dict, with_torch: bool) -> list[str]:
  peak = report.get("peak_flops", {})
  peak_kind = "bf16_f32acc" if "bf16_f32acc" in peak else "float32"
  lines = [f"Matmul peak measured in the same run ({peak_kind.replace('_f32acc', '')} inputs):"
           f" {peak.get(peak_kind, float('nan')) / 1e12:.1f} TFLOP/s; analytic model FLOPs per "
           f"step {report['analytic_flops_per_step'] / 1e12:.2f} T; batch {report['batch']}.",
           "",
           "| variant | step (s) | pairs/s | MFU vs measured peak | XLA memory (GiB) |"
           + (" vs fastest torch |" if with_torch else ""),
           "|---|---|---|---|---|" + ("---|" if with_torch else "")]
  for v in report["variants"]:
    mfu = v["mfu_bf16_peak"] if peak_kind == "bf16_f32acc" else v["mfu_f32_peak"]
    mem = "" if v.get("xla_bytes") is None else f"{v['xla_bytes'] / GIB:.2f}"
    row = (f"| {v['name']} | {v['step_s']:.4f} | {v['pairs_per_s']:,.0f} | "
           f"{100 * mfu:.1f}% | {mem} |")
    if with_torch:
      row += f" {v.get('speedup_vs_fastest_torch', float('nan')):.2f}x |"
    lines.append(row)
  return lines


def main(directory: str) -> int:
  out, ok = [], True
  batch = load(directory, "largest_batch")
  attention = load(directory, "attention")
  head = attention or load(directory, "objectives") or load(directory, "remat") or {}
  out.append(f"## Device check: {head.get('machine', '?')}, {head.get('date', '?')}")
  out.append("")
  out.append(", ".join(f"{k} {v}" for k, v in head.get("versions", {}).items()))
  out.append("")
  if batch:
    out.append(f"Largest batch: {batch['batch']} ({batch['model']}, {batch['precision']}, "
               f"{batch['objective']}): step {batch['step_bytes'] / GIB:.2f} GiB of "
               f"{batch['device_bytes'] / GIB:.2f} GiB (budget {batch['fraction']:.0%}); "
               f"{batch['bytes_per_pair'] / 2**20:.1f} MiB per pair.")
  else:
    ok = False
    out.append(failed("largest_batch"))
  out += ["", "### Attention kernels and the PyTorch peer", ""]
  if attention:
    out += steps_table(attention, any(v["kind"] == "torch" for v in attention["variants"]))
  else:
    ok = False
    out.append(failed("attention"))
  out += ["", "### Objectives", ""]
  objectives = load(directory, "objectives")
  if objectives:
    out += steps_table(objectives, False)
    out += ["", "| objective | step vs CLIP |", "|---|---|"]
    out += [f"| {v['objective']} | {v['step_vs_first_objective']:.3f} |"
            for v in objectives["variants"] if v["kind"] == "lang_image"]
  else:
    ok = False
    out.append(failed("objectives"))
  out += ["", "### Rematerialisation (compiled, not run)", ""]
  remat = load(directory, "remat")
  if remat:
    out += ["| variant | XLA memory (GiB) | compile (s) |", "|---|---|---|"]
    for v in remat["variants"]:
      mem = "" if v["xla_bytes"] is None else f"{v['xla_bytes'] / GIB:.2f}"
      out.append(f"| {v['name']} | {mem} | {v['compile_s']:.1f} |")
  else:
    ok = False
    out.append(failed("remat"))
  print("\n".join(out))
  return 0 if ok else 1


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit("usage: python benchmarks/device_report.py DIR")
  sys.exit(main(sys.argv[1]))
