"""Trains every objective with one budget and paired seeds, and tests each paper's claim.

    python -m lang_image.compare --out=/tmp/compare            # 6 configs + untrained, 3 seeds
    python -m lang_image.compare --out=/tmp/cq --quick         # the same, small (tests use it)
    python -m lang_image.compare --out=/tmp/c --configs=clip,xclip --seeds=0,1 --steps=100

Each run is `python main.py --config=configs/NAME.py:steps=S,batch=B,seed=K,data=D` with its
own workdir under OUT/runs/; the untrained towers (`lang_image.untrained`: the clip config's
model evaluated at initialisation, one per seed) are the row 'untrained'. A run whose final
evaluation exists is not repeated and an interrupted one resumes from its checkpoint, so the
command can be re-run after a stop. --parallel=N runs N at a time, each XLA single-threaded
(the data and its tokenizer are prepared once beforehand). The runs share a compilation cache in
OUT/xla_cache (unless JAX_COMPILATION_CACHE_DIR is set).

Budgets (explicit flags win): the default, sized for at most 45 minutes on a 2-core CPU,
and --quick, for at most 10 (the tiny variant of the data, no pictures, 2 runs at a time);
`FULL` and `QUICK` below. Writes:
  OUT/runs.csv          one row per run: every final eval metric, plus nCLIP's training-log
                        monitors (lowest entropy ratio, last mutual information)
  OUT/table.md, .csv    mean and standard deviation over seeds per config (compare_report)
  OUT/comparison.png    the table's metrics as bars with the seeds' spread
  OUT/claims.md, .csv   each claim: paired differences over seeds, mean, 95 % CI (Student's
                        t) and verdict holds / refuted / inconclusive (compare_claims' rule)
  OUT/claims.png        each claim's mean difference with its CI, coloured by verdict
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from lang_image import compare_claims as claims_lib, compare_report as report

CONFIGS = ("clip", "siglip", "nclip", "xclip", "rankclip", "cliplite")
UNTRAINED_CONFIG = "clip"  # The model the untrained row evaluates at initialisation.


@dataclasses.dataclass(frozen=True)
class Budget:
  steps: int
  batch: int
  seeds: tuple[int, ...]
  variant: str
  parallel: int
  overrides: tuple[str, ...] = ()


FULL = Budget(steps=100, batch=128, seeds=(0, 1, 2), variant="default", parallel=2)
QUICK = Budget(steps=20, batch=64, seeds=(0, 1, 2), variant="tiny", parallel=2,
               overrides=("eval.pictures=False",))
# XLA:CPU single-threaded, for runs that share the cores with each other.
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

_OUT = flags.DEFINE_string("out", None, "Directory for the runs, tables and pictures.")
_CONFIGS = flags.DEFINE_list("configs", list(CONFIGS), "Config names under configs/.")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds, one run per config and seed (default: "
                           f"{FULL.seeds}; --quick {QUICK.seeds}).")
_STEPS = flags.DEFINE_integer("steps", None, f"Training steps of every run (default: "
                              f"{FULL.steps}; --quick {QUICK.steps}).")
_BATCH = flags.DEFINE_integer("batch", None, f"Global batch of every run (default: "
                              f"{FULL.batch}; --quick {QUICK.batch}).")
_DATA = flags.DEFINE_string("data", "scenes", "Training data of every run (the configs' "
                            "`data` argument: scenes, shapes, or a source without commas).")
_VARIANT = flags.DEFINE_string("variant", None, "config.data.variant of the generated data "
                               f"(default: {FULL.variant}; --quick {QUICK.variant}).")
_QUICK = flags.DEFINE_bool("quick", False, "The small budget (QUICK): at most 10 minutes.")
_PARALLEL = flags.DEFINE_integer("parallel", None, "Runs at a time (default: "
                                 f"{FULL.parallel}; --quick {QUICK.parallel}).")
_UNTRAINED = flags.DEFINE_bool("untrained", True, "Also evaluate the untrained towers.")
_EXTRA = flags.DEFINE_list("override", [], "Extra --config.x=y overrides for every run.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def budget(quick: bool, steps=None, batch=None, seeds=None, variant=None, parallel=None,
           extra=()) -> Budget:
  """The budget: --quick's or the default, each given flag replacing its field; `extra`
  overrides replace the budget's own for the same key."""
  base = QUICK if quick else FULL
  keys = {o.partition("=")[0] for o in extra}
  chosen = Budget(
      steps=base.steps if steps is None else int(steps),
      batch=base.batch if batch is None else int(batch),
      seeds=base.seeds if seeds is None else tuple(int(s) for s in seeds),
      variant=base.variant if variant is None else variant,
      parallel=base.parallel if parallel is None else int(parallel),
      overrides=tuple(o for o in base.overrides if o.partition("=")[0] not in keys)
      + tuple(extra))
  for name in ("steps", "batch", "parallel"):
    if getattr(chosen, name) < 1:
      raise app.UsageError(f"--{name} must be at least 1, got {getattr(chosen, name)}.")
  if not chosen.seeds or len(set(chosen.seeds)) != len(chosen.seeds):
    raise app.UsageError(f"--seeds must name distinct seeds, got {list(chosen.seeds)}.")
  return chosen


@dataclasses.dataclass(frozen=True)
class Job:
  name: str  # A config name, or claims_lib.UNTRAINED.
  seed: int
  workdir: str
  final: str  # The evaluation whose existence means the run is done.
  command: tuple[str, ...]


def job(name: str, seed: int, b: Budget, data: str, out: str) -> Job:
  workdir = os.path.join(out, "runs", f"{name}_seed{seed}")
  untrained = name == claims_lib.UNTRAINED
  config = os.path.join(ROOT, "configs", (UNTRAINED_CONFIG if untrained else name) + ".py")
  overrides = list(b.overrides)
  if b.variant != "default" and not any(o.startswith("data.variant=") for o in overrides):
    overrides.insert(0, f"data.variant={b.variant}")
  program = ["-m", "lang_image.untrained"] if untrained else [os.path.join(ROOT, "main.py")]
  step = 0 if untrained else b.steps
  command = (sys.executable, *program,
             f"--config={config}:steps={b.steps},batch={b.batch},seed={seed},data={data}",
             f"--workdir={workdir}", *[f"--config.{o}" for o in overrides])
  return Job(name, seed, workdir, os.path.join(workdir, "eval", f"step_{step:08d}.json"),
             command)


def run_env(parallel: int, out: str) -> dict:
  """The runs' environment: a shared compilation cache; XLA single-threaded when several
  runs share the cores."""
  env = dict(os.environ)
  if not env.get("JAX_COMPILATION_CACHE_DIR"):
    env.update(JAX_COMPILATION_CACHE_DIR=os.path.join(out, "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  if parallel > 1:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA}".strip()
  return env


def prepare_data(jobs: list[Job]) -> None:
  """Generates the data and tokenizer the unfinished runs read (a no-op when they exist),
  so that runs started side by side do not each build them; nothing when all are done."""
  todo = [j for j in jobs if not os.path.exists(j.final)]
  if not todo:
    return
  j = todo[0]
  from lang_image import config as config_lib  # noqa: PLC0415 (TF is slow to import)
  from lang_image.data import pipeline  # noqa: PLC0415
  spec = next(a for a in j.command if a.startswith("--config="))[len("--config="):]
  c = config_lib.load_config_file(spec)
  for arg in j.command:
    if arg.startswith("--config.data."):
      key, _, value = arg[len("--config.data."):].partition("=")
      c.data[key] = config_lib.convert(f"data.{key}", value, c.data[key])
  dataset = pipeline.open_dataset(c.data, c.model.max_len, c.model.image_size)
  dataset.builder  # noqa: B018 (the embedded evaluation splits, prepared on first use)


def run_all(jobs: list[Job], parallel: int, env: dict, on_done=None) -> list[Job]:
  """Runs the jobs whose final evaluation is missing, `parallel` at a time; returns the
  failed. on_done(job, seconds) is called as each finishes successfully."""
  todo = [j for j in jobs if not os.path.exists(j.final)]
  running, failed = {}, []
  while todo or running:
    while todo and len(running) < parallel:
      j = todo.pop(0)
      os.makedirs(j.workdir, exist_ok=True)
      log = open(os.path.join(j.workdir, "compare.log"), "a")
      running[j] = (subprocess.Popen(j.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=env), log, time.time())
    time.sleep(0.2)
    for j, (process, log, t0) in list(running.items()):
      if process.poll() is None:
        continue
      log.close()
      del running[j]
      if process.returncode != 0 or not os.path.exists(j.final):
        failed.append(j)
      elif on_done is not None:
        on_done(j, time.time() - t0)
  return failed


def read_run(j: Job) -> dict:
  """A finished run's final eval metrics and nCLIP's training-log monitors."""
  with open(j.final) as f:
    metrics = dict(json.load(f)["metrics"])
  path = os.path.join(j.workdir, "train_metrics.jsonl")
  logged = []
  if os.path.exists(path):
    with open(path) as f:
      by_step = {r["step"]: r for r in map(json.loads, filter(str.strip, f))}
    logged = [by_step[s] for s in sorted(by_step) if "nclip/mean_entropy_ratio" in by_step[s]]
  if logged:
    metrics[report.COLLAPSE] = min(r["nclip/mean_entropy_ratio"] for r in logged)
    metrics[report.MUTUAL_INFORMATION] = logged[-1]["nclip/mutual_information"]
  return metrics


def header(b: Budget, data: str, configs, seconds: float, date: str) -> str:
  return (f"{date}; the command took {seconds / 60:.1f} min (wall time, {os.cpu_count()} "
          f"cores); {b.steps} steps, batch {b.batch}, seeds {', '.join(map(str, b.seeds))}; "
          f"data {data} (variant {b.variant}); configs {', '.join(configs)}; "
          f"{b.parallel} run(s) at a time.\n\n")


def write_outputs(out: str, rows: list[dict], head: str) -> str:
  """Every table and picture of the module docstring; returns the markdown printed."""
  report.write_csv(os.path.join(out, "runs.csv"), rows)
  summary = report.summarise(rows)
  report.write_csv(os.path.join(out, "table.csv"), summary)
  table = head + "Mean ± std over seeds (%).\n\n" + report.markdown_table(summary)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table)
  report.plot(os.path.join(out, "comparison.png"), summary)
  results = claims_lib.judge_claims(rows)
  claims = head + report.rule_text() + "\n\n" + report.claims_markdown(results)
  with open(os.path.join(out, "claims.md"), "w") as f:
    f.write(claims)
  report.write_claims_csv(os.path.join(out, "claims.csv"), results)
  if results:
    report.plot_claims(os.path.join(out, "claims.png"), results)
  return table + "\n" + claims


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.time()
  unknown = [c for c in _CONFIGS.value
             if not os.path.exists(os.path.join(ROOT, "configs", c + ".py"))]
  if unknown:
    raise app.UsageError(f"no config file configs/{unknown[0]}.py; known: {', '.join(CONFIGS)}.")
  b = budget(_QUICK.value, _STEPS.value, _BATCH.value, _SEEDS.value, _VARIANT.value,
             _PARALLEL.value, _EXTRA.value)
  out = _OUT.value
  os.makedirs(out, exist_ok=True)
  names = ([claims_lib.UNTRAINED] if _UNTRAINED.value else []) + list(_CONFIGS.value)
  jobs = [job(name, seed, b, _DATA.value, out) for name in names for seed in b.seeds]

  def done(j, seconds):
    m = read_run(j)
    shown = {k: f(m) for k, f in claims_lib.METRICS.items()}
    print(f"{j.name} seed {j.seed} ({seconds:.0f} s): " + ", ".join(
        f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in shown.items()), flush=True)

  prepare_data(jobs)
  failed = run_all(jobs, b.parallel, run_env(b.parallel, out), done)
  if failed:
    logs = ", ".join(os.path.join(j.workdir, "compare.log") for j in failed)
    print(f"error: {len(failed)} run(s) failed; see {logs}", file=sys.stderr)
    sys.exit(1)
  rows = [{"config": j.name, "seed": j.seed, **read_run(j)} for j in jobs]
  head = header(b, _DATA.value, names, time.time() - start, time.strftime("%Y-%m-%d %H:%M"))
  print(write_outputs(out, rows, head))


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
