"""Every shell command in README.md and in the configs' docstrings, run as typed in bash.

Commands are found, not listed: each line (with its backslash continuations) of a ```bash
block in README.md, and each line of a config docstring that starts with `python `. A
command is split at ` && ` and each part is checked by the rule for its program:

- `python main.py` training the CPU model (`mu/...`): run for real in the slow step, with
  SMALL_RUN appended (2 steps of batch 32, the tiny embedded data, a short evaluation);
- `python main.py` on any other model needs accelerators: tests/check_command_line.py takes
  main.py's place (main.py's flag parsing, config validation, the data sources opened);
- `python -m lang_image.evaluate`: run for real in the slow step, after the command that
  trains its workdir, with SMALL_EVAL appended;
- the LAUNCHERS: run with `--dry-run`, and their main.py arguments checked as above;
- the parts in SKIPPED, for the reason given there.

Absolute paths under /tmp, /data, /mnt and /shared become paths in a temporary directory,
and data named under /data is written there first (tests/data_fixtures.py). Every command
is also parsed by `bash -n` exactly as typed.
"""

import ast
import dataclasses
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import types

import pytest

import data_fixtures as fx
from cli_runs import ROOT, env

SKIPPED = {
    "pip install": "installs packages from PyPI (network); CI installs them before its tests",
    "python -m pytest": "the test suite itself: .ci/run runs exactly this line "
                        "(test_ci_finds_both_test_commands checks that it finds it)",
}
LAUNCHERS = ("python launch/local.py", "launch/tpu_pod.sh", "launch/slurm.sh")
CPU_MODEL = "mu/"  # main.py commands training the CPU model run for real; others are checked.
SMALL_RUN = ("--config.total_steps=2", "--config.batch_size=32", "--config.data.variant=tiny",
             "--config.data.data_dir={data_dir}", "--config.log_every=1",
             "--config.eval.linear_probe=False", "--config.eval.knn=False",
             "--config.eval.pictures=False")
SMALL_EVAL = ("--pictures=False",)
LOCAL_PATH = re.compile(r"(?<![\w/.])/(tmp|data|mnt|shared)/")
DATA_PATH = re.compile(r"(?<![\w/.])/data/[^\s'\",;]+")
CHECK = f"{sys.executable} tests/check_command_line.py"
COMMAND_LINE = re.compile(r"\s*(\$ )?(python3? \S|pip install |launch/\S+\.(sh|py) )")


@dataclasses.dataclass(frozen=True)
class Part:
  where: str  # file:line of the command it belongs to
  command: str  # the whole command, as typed
  text: str  # this part of it (between ` && `)

  @property
  def program(self):
    programs = ("python main.py", "python -m lang_image.evaluate", *LAUNCHERS, *SKIPPED)
    return next((p for p in programs if self.text.startswith(p + " ")), None)


def _joined(numbered_lines):
  """(line number, text) of each command, backslash continuations joined; comments dropped."""
  found, pending, start = [], "", None
  for number, line in numbered_lines:
    if not pending and (not line.strip() or line.strip().startswith("#")):
      continue
    start = number if not pending else start
    if line.rstrip().endswith("\\"):
      pending += line.rstrip()[:-1].strip() + " "
      continue
    found.append((start, pending + line.strip()))
    pending = ""
  return found


def readme_commands():
  found, block = [], None
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, 1):
    if line.strip().startswith("```"):
      if block is None:
        block = [] if line.strip() == "```bash" else "other"
      else:
        if block != "other":
          found += [(f"README.md:{n}", text) for n, text in _joined(block)]
        block = None
    elif block is not None and block != "other":
      block.append((number, line))
  return found


def config_commands():
  found = []
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    with open(path, encoding="utf-8") as f:
      module = ast.parse(f.read())
    docstring = ast.get_docstring(module, clean=False) or ""
    kept, continued = [], False
    for number, line in enumerate(docstring.splitlines(), module.body[0].lineno):
      if continued or line.strip().startswith("python "):
        kept.append((number, line))
        continued = line.rstrip().endswith("\\")
    found += [(f"configs/{os.path.basename(path)}:{n}", t) for n, t in _joined(kept)]
  return found


def all_parts():
  parts, seen = [], set()
  for where, command in readme_commands() + config_commands():
    for text in command.split(" && "):
      key = " ".join(text.split())
      if key not in seen:
        seen.add(key)
        parts.append(Part(where, command, key))
  return parts


PARTS = all_parts()


def args_of(part):
  return shlex.split(part.text[len(part.program):])


def model_of(part):
  """The ViT the command trains: the arg string's `model`, else the configs' default."""
  args = args_of(part)
  spec = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), "")
  model = next((kv.split("=", 1)[1] for kv in spec.partition(":")[2].split(",")
                if kv.startswith("model=")), "mu/8")
  return next((a.split("=", 1)[1] for a in args if a.startswith("--config.model.image=")),
              model)


def runs_on_cpu(part):
  return (part.program == "python main.py" and model_of(part).startswith(CPU_MODEL)
          and not any(a.startswith("--config.init=") for a in args_of(part)))


def localize(text, root):
  return LOCAL_PATH.sub(lambda m: f"{root}/{m.group(1)}/", text)


def write_data(text, root):
  """Small data at each /data/... path the command names, under root."""
  for path in sorted(set(DATA_PATH.findall(text))):
    directory, name = os.path.split(root + path)
    shards = re.fullmatch(r"\{0{5}\.\.(\d{5})\}\.tar", name)  # data_fixtures' shard names
    if shards:
      fx.write_wds(directory, shards=int(shards.group(1)) + 1, per_shard=4, faults=False)
    elif name.endswith((".csv", ".tsv", ".jsonl")):
      planted = (fx.write_jsonl(directory, n=8, faults=False) if name.endswith(".jsonl") else
                 fx.write_csv(directory, n=8, faults=False,
                              separator="\t" if name.endswith(".tsv") else ","))
      os.replace(planted.files[0], os.path.join(directory, name))
    else:
      raise AssertionError(f"{path}: no fixture for this kind of data; teach write_data it.")


def bash(text, root, devices=1, timeout=300):
  environ = dict(env(devices), LANG_IMAGE_DATA_DIR=os.path.join(root, "cache"))
  environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environ["PATH"]
  return subprocess.run(["bash", "-c", text], cwd=ROOT, env=environ, capture_output=True,
                        text=True, timeout=timeout)


def ids(parts):
  return [f"{p.where}:{p.text[:60]}" for p in parts]


def test_commands_are_found_and_each_has_a_rule():
  where = {p.where.split(":")[0] for p in PARTS}
  assert "README.md" in where and len([w for w in where if w.startswith("configs/")]) == 6
  assert not [p.text for p in PARTS if p.program is None], "add a rule for these programs"
  assert not [p.text for p in PARTS if "gs://" in p.text], "gs:// workdirs are not supported"


def test_no_command_outside_a_bash_block():
  """A command in an indented block or another fence would escape this test."""
  stray, block = [], None
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.strip().startswith("```"):
        block = None if block is not None else line.strip()
      elif block != "```bash" and COMMAND_LINE.match(line) and (
          block is not None or line.startswith("    ")):
        stray.append(f"README.md:{number}: {line.strip()}")
  assert not stray


def test_ci_finds_both_test_commands():
  found = dict(readme_commands())
  for marker, expected in (("ci:test-command", '-m "not slow" tests'),
                           ("ci:slow-test-command", "-m slow tests")):
    awk = f"/<!-- {marker} -->/{{getline; getline; print; exit}}"
    line = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert line.endswith(expected) and line in found.values(), (marker, line)


@pytest.mark.parametrize("part", PARTS, ids=ids(PARTS))
def test_bash_parses_the_command(part):
  result = subprocess.run(["bash", "-n", "-c", part.command], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


CHECKED = [p for p in PARTS if p.program == "python main.py" or p.program in LAUNCHERS]


@pytest.mark.parametrize("part", CHECKED, ids=ids(CHECKED))
def test_main_arguments_are_valid(part, tmp_path):
  root = str(tmp_path)
  write_data(part.text, root)
  checked = CHECK + localize(part.text[len(part.program):], root)
  result = bash(checked, root, devices=8)
  assert result.returncode == 0, result.stderr[-2000:]
  run = json.loads(result.stdout.strip().splitlines()[-1])
  assert run["model"] == model_of(part) and run["workdir"].startswith(root)
  for source, spec in zip(run["sources"], run["data"].split(";")):
    assert source["records"] > 0, run
    ranged = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if ranged:  # The whole brace range reached the source, not one item of it.
      assert source["shards"] == int(ranged.group(2)) - int(ranged.group(1)) + 1, run
  if "csv_separator=" in part.text:
    assert run["csv_separator"] in ("\\t", "tab"), run


LAUNCHED = [p for p in PARTS if p.program in LAUNCHERS]


@pytest.mark.parametrize("part", LAUNCHED, ids=ids(LAUNCHED))
def test_launcher_dry_run(part, tmp_path):
  root = str(tmp_path)
  dry = localize(part.text.replace(part.program, part.program + " --dry-run", 1), root)
  result = bash(dry, root)
  assert result.returncode == 0, result.stderr[-2000:]
  main_args = shlex.split(dry.split(" -- ", 1)[1])
  assert all(arg in result.stdout for arg in main_args), result.stdout[-2000:]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_data_dir):
  """Runs parts once per session, in a shared temporary root (a run's workdir outlives it)."""
  root, done = str(tmp_path_factory.mktemp("readme_runs")), {}

  def run(part, extra):
    if part not in done:
      appended = " ".join(a.format(data_dir=tiny_data_dir) for a in extra)
      done[part] = bash(f"{localize(part.text, root)} {appended}", root, timeout=600)
    return done[part]
  return types.SimpleNamespace(root=root, run=run)


def workdir_of(part, root):
  return next(localize(a, root).split("=", 1)[1] for a in args_of(part)
              if a.startswith("--workdir="))


TRAINED = [p for p in PARTS if runs_on_cpu(p)]


@pytest.mark.slow
@pytest.mark.parametrize("part", TRAINED, ids=ids(TRAINED))
def test_cpu_training_command_runs(part, runs):
  result = runs.run(part, SMALL_RUN)
  assert result.returncode == 0, result.stderr[-3000:]
  final = result.stdout.strip().splitlines()[-1]
  # Zero-shot on shapes, or per label set on scenes (the default data).
  assert final.startswith("final ") and re.search(r"zero_shot/(\w+/)?top1=", final), \
      result.stdout[-2000:]
  workdir = workdir_of(part, runs.root)
  assert os.path.isfile(os.path.join(workdir, "eval", "step_00000002.json"))
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]


EVALUATED = [p for p in PARTS if p.program == "python -m lang_image.evaluate"]


@pytest.mark.slow
@pytest.mark.parametrize("part", EVALUATED, ids=ids(EVALUATED))
def test_evaluation_command_runs(part, runs):
  workdir = workdir_of(part, runs.root)
  producers = [p for p in TRAINED if workdir_of(p, runs.root) == workdir]
  assert producers, f"no CPU training command in README writes {workdir}"
  assert runs.run(producers[0], SMALL_RUN).returncode == 0
  result = runs.run(part, SMALL_EVAL)
  assert result.returncode == 0, result.stderr[-3000:]
  written = os.listdir(os.path.join(workdir, "benchmark", "step_00000002"))
  assert any("zeroshot_classification" in name for name in written), written
