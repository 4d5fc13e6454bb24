"""Why nCLIP collapses on the CPU model, and what stops it: one run per setting and seed.

    python -m benchmarks.nclip_ablation --out=/tmp/nclip_ablation                 # every setting
    python -m benchmarks.nclip_ablation --out=/tmp/a --settings=paper,k64 --steps=200 --parallel=2

Every setting is `configs/<config>.py:data=<data>,steps=S,seed=K` plus its overrides, all with
the paper's head (no batch standardisation) unless the setting says otherwise. A run whose
final evaluation exists is not repeated. Prints and writes OUT/ablation.md and .csv: per
setting and seed, the nCLIP heads' collapse measures on the test split (mutual information
H(mean p) - mean H(p) in nats, distinct argmax prototypes of images and texts) and on the last
logged training batch, with zero-shot on the hardest label set and the linear probe.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

from absl import app, flags

from lang_image import compare

# The paper's term as the small models' configs state it (configs/xclip.py's CPU model
# departs from it): every setting starts here.
PAPER = {"objectives.nclip.head_norm": "none", "objectives.nclip.anti_collapse": "me_max",
         "objectives.nclip.prototypes": 4096, "objectives.nclip.sinkhorn_eps": 0.05}
SINKHORN_K64 = {"objectives.nclip.anti_collapse": "sinkhorn", "objectives.nclip.prototypes": 64}
EPS = "objectives.nclip.sinkhorn_eps"
# name -> (config, overrides on top of the paper's term). K: prototypes; B = 128.
SETTINGS = {
    "paper": ("nclip", {}),
    "batch_norm_head": ("nclip", {"objectives.nclip.head_norm": "batch"}),
    "k1024": ("nclip", {"objectives.nclip.prototypes": 1024}),
    "k256": ("nclip", {"objectives.nclip.prototypes": 256}),
    "k64": ("nclip", {"objectives.nclip.prototypes": 64}),
    "k128": ("nclip", {"objectives.nclip.prototypes": 128}),
    "me_max_2": ("nclip", {"objectives.nclip.me_max_weight": 2.0}),
    "me_max_5": ("nclip", {"objectives.nclip.me_max_weight": 5.0}),
    "teacher_temp_0.07": ("nclip", {"objectives.nclip.teacher_temp": 0.07}),
    "sinkhorn": ("nclip", {"objectives.nclip.anti_collapse": "sinkhorn"}),
    "ema_teacher": ("nclip", {"objectives.nclip.teacher": "ema"}),
    "batch_norm_head_k64": ("nclip", {"objectives.nclip.head_norm": "batch",
                                       "objectives.nclip.prototypes": 64}),
    "sinkhorn_k64": ("nclip", SINKHORN_K64),
    "xclip_paper": ("xclip", {}),
    "xclip_sinkhorn_k64": ("xclip", SINKHORN_K64),
    "xclip_sinkhorn_k64_eps0.03": ("xclip", {**SINKHORN_K64, EPS: 0.03}),
    "xclip_sinkhorn_k64_eps0.02": ("xclip", {**SINKHORN_K64, EPS: 0.02}),
    "xclip_sinkhorn_k64_tau_s0.05": ("xclip", {**SINKHORN_K64,
                                               "objectives.nclip.student_temp": 0.05}),
    "sinkhorn_k64_ema": ("nclip", {**SINKHORN_K64, "objectives.nclip.teacher": "ema"}),
    "sinkhorn_k64_eps0.03": ("nclip", {**SINKHORN_K64, EPS: 0.03}),
    "xclip_batch_norm_head_k64": ("xclip", {"objectives.nclip.head_norm": "batch",
                                            "objectives.nclip.prototypes": 64}),
    "xclip_k64": ("xclip", {"objectives.nclip.prototypes": 64}),
    "xclip_k128": ("xclip", {"objectives.nclip.prototypes": 128}),
    "xclip_me_max_5": ("xclip", {"objectives.nclip.me_max_weight": 5.0}),
}
HEADS = ("image", "text")

_SETTINGS = flags.DEFINE_list("settings", list(SETTINGS), "Settings to run (SETTINGS keys).")
FLAGS = flags.FLAGS  # --out, --seeds, --steps, --data and --parallel are compare's flags.
DEFAULT_STEPS = 500  # the default budget of every config


def _steps() -> int:
  return FLAGS.steps or DEFAULT_STEPS


def _parallel() -> int:
  return FLAGS.parallel or 1


def job(setting: str, seed: int, out: str) -> compare.Job:
  """The run of one setting and seed: compare's run of its config with the overrides."""
  config, overrides = SETTINGS[setting]
  b = compare.Budget(steps=_steps(), batch=128, seeds=(seed,), variant="default",
                     parallel=_parallel(),
                     overrides=tuple(f"{k}={v}" for k, v in {**PAPER, **overrides}.items()))
  j = compare.job(config, seed, b, FLAGS.data, out)
  workdir = os.path.join(out, "runs", f"{setting}_seed{seed}")
  return dataclasses.replace(j, name=setting, workdir=workdir,
                             final=j.final.replace(j.workdir, workdir),
                             command=tuple(c.replace(j.workdir, workdir) for c in j.command))


def row(j: compare.Job) -> dict:
  setting, seed, final, workdir = j.name, j.seed, j.final, j.workdir
  overrides = SETTINGS[setting][1]
  with open(final) as f:
    metrics = json.load(f)["metrics"]
  from lang_image import train  # noqa: PLC0415
  logged = [r for r in train.read_train_metrics(workdir) if "nclip/mutual_information" in r]
  row = {"setting": setting, "seed": seed, "overrides": " ".join(
      f"{k.split('.')[-1]}={v}" for k, v in overrides.items())}
  for head in HEADS:
    for key in ("mutual_information", "distinct_argmax"):
      row[f"test_{head}_{key}"] = metrics.get(f"nclip_heads/{head}/{key}")
  if logged:
    row["train_mutual_information"] = logged[-1]["nclip/mutual_information"]
    row["train_min_entropy_ratio"] = min(r["nclip/mean_entropy_ratio"] for r in logged)
  zero_shot = [k for k in metrics if k.startswith("zero_shot/") and k.endswith("/top1")]
  hardest = "zero_shot/full/top1" if "zero_shot/full/top1" in metrics else "zero_shot/top1"
  row["zero_shot_hardest"] = metrics.get(hardest)
  probes = [v for k, v in metrics.items() if k.startswith("linear_probe/") and k.endswith("top1")]
  row["linear_probe_mean"] = sum(probes) / len(probes) if probes else None
  row["zero_shot_sets"] = len(zero_shot)
  return row


def _cell(v) -> str:
  if v is None:
    return ""
  return f"{v:.2f}" if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
  keys = [k for k in rows[0] if k != "zero_shot_sets"]
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if not FLAGS.out:
    raise app.UsageError("--out is required: the directory for the runs and the table.")
  unknown = [s for s in _SETTINGS.value if s not in SETTINGS]
  if unknown:
    raise app.UsageError(f"unknown setting {unknown[0]!r}; known: {', '.join(SETTINGS)}.")
  os.makedirs(FLAGS.out, exist_ok=True)
  jobs = [job(s, int(k), FLAGS.out) for s in _SETTINGS.value for k in (FLAGS.seeds or [0])]
  compare.prepare_data(jobs)
  failed = compare.run_all(jobs, _parallel(), compare.run_env(_parallel(), FLAGS.out))
  if failed:
    raise SystemExit(f"{len(failed)} run(s) failed; see "
                     + ", ".join(os.path.join(j.workdir, "compare.log") for j in failed))
  rows = [row(j) for j in jobs]
  text = f"{_steps()} steps, data {FLAGS.data}\n\n" + table(rows)
  with open(os.path.join(FLAGS.out, "ablation.md"), "w") as f:
    f.write(text)
  with open(os.path.join(FLAGS.out, "ablation.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(text)


if __name__ == "__main__":
  app.run(main)
