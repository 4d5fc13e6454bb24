"""The launchers: what each --dry-run would run, and a real 2-process x 4-device training run.

The real run trains a small CLIP on the tiny embedded data through launch/local.py, resumes it
from a checkpoint, and is preempted; tests/test_resume_layouts.py compares 2 processes x 4
devices with 1 x 8 over 20 steps and resumes across layouts.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from cli_runs import saved_state, train_losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")
STEPS = 3


def run(argv, env=None, timeout=60):
  return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def fake_bin(tmp_path, name):
  """An executable `name` on PATH that prints its arguments, one per line, and succeeds."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} called"\nfor a; do echo "$a"; done\n')
  (bin_dir / name).chmod(0o755)
  return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


# --- launch/local.py ---------------------------------------------------------------------


def test_local_dry_run_prints_each_process_with_its_environment():
  result = run([sys.executable, os.path.join(LAUNCH, "local.py"), "--processes=3", "--devices=2",
                "--port=23456", "--dry-run", "--", "--config=configs/clip.py", "--workdir=/tmp/w"])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0::2] == ["# process 0 of 3", "# process 1 of 3", "# process 2 of 3"]
  for i, line in enumerate(lines[1::2]):
    assert "JAX_PLATFORMS=cpu" in line
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in line
    assert "LANG_IMAGE_COORDINATOR=127.0.0.1:23456" in line
    assert "LANG_IMAGE_NUM_PROCESSES=3" in line
    assert f"LANG_IMAGE_PROCESS_ID={i}" in line
    assert "JAX_ENABLE_COMPILATION_CACHE=false" in line
    assert line.endswith(f"{os.path.join(ROOT, 'main.py')} --config=configs/clip.py "
                         "--workdir=/tmp/w")


@pytest.mark.parametrize("args, message", [
    (["--processes=0", "--", "x"], "--processes=0 is not a process count; give at least 1"),
    (["--devices=-1", "--", "x"], "--devices=-1 is not a device count"),
    (["--port=70000", "--", "x"], "--port=70000 is not a TCP port"),
    (["--processes=2"], "no arguments for main.py; put them after '--'"),
])
def test_local_bad_arguments_fail_with_one_sentence(args, message):
  result = run([sys.executable, os.path.join(LAUNCH, "local.py"), *args])
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_local_stops_everyone_when_one_process_fails(tmp_path):
  script = tmp_path / "job.py"
  script.write_text(
      "import os, sys, time\n"
      "if os.environ['LANG_IMAGE_PROCESS_ID'] == '1':\n"
      "  print('process 1 gives up'); sys.exit(3)\n"
      "time.sleep(60)\n")
  result = run([sys.executable, os.path.join(LAUNCH, "local.py"), "--processes=2",
                f"--main={script}", f"--logdir={tmp_path / 'logs'}", "--", "x"], timeout=30)
  assert result.returncode == 3
  assert "[process 1] process 1 gives up" in result.stderr
  assert "error: process 1 of 2 exited with status 3" in result.stderr


# --- launch/tpu_pod.sh -------------------------------------------------------------------


def test_tpu_pod_dry_run_prints_every_gcloud_command():
  result = run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), "--dry-run", "--name=clip-test",
                "--zone=us-central2-b", "--type=v4-32", "--project=my-project", "all", "--",
                "--config=configs/clip.py:model=B/16,batch=4096", "--workdir=/mnt/shared/clip"])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  where = "--zone=us-central2-b --project=my-project"
  assert lines[0] == (f"gcloud compute tpus tpu-vm create clip-test {where} "
                      "--accelerator-type=v4-32 --version=tpu-ubuntu2204-base")
  assert lines[1].startswith(f"tar -czf /") and f"-C {ROOT} --exclude=.git" in lines[1]
  assert lines[2].startswith("gcloud compute tpus tpu-vm scp /")
  assert lines[2].endswith(f"clip-test:lang_image.tar.gz {where} --worker=all")
  assert lines[3].startswith(f"gcloud compute tpus tpu-vm ssh clip-test {where} --worker=all ")
  assert "tar -xzf lang_image.tar.gz -C lang_image" in lines[3]
  assert "pip install -q -e . " in lines[3] and "jax[tpu]==0.10.2" in lines[3]
  assert lines[4] == (f"gcloud compute tpus tpu-vm ssh clip-test {where} --worker=all "
                      "'--command=cd lang_image && python3 main.py "
                      "--config=configs/clip.py:model=B/16,batch=4096 --workdir=/mnt/shared/clip'")
  assert lines[5] == f"gcloud compute tpus tpu-vm delete clip-test {where} --quiet"
  assert len(lines) == 6


def test_tpu_pod_runs_gcloud_with_the_printed_arguments(tmp_path):
  env = fake_bin(tmp_path, "gcloud")
  result = run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), "--name=clip-test", "--spot",
                "create"], env=env)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      "gcloud called", "compute", "tpus", "tpu-vm", "create", "clip-test",
      "--zone=us-central2-b", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base",
      "--spot"]
  result = run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), "--name=clip-test", "run", "--",
                "--config=configs/clip.py", "--config.optim.lr=1e-4", "--workdir=/a b"], env=env)
  assert result.stdout.splitlines()[-1] == (
      "--command=cd lang_image && python3 main.py --config=configs/clip.py "
      "--config.optim.lr=1e-4 '--workdir=/a b'")


def test_tpu_pod_all_deletes_the_slice_when_the_run_fails(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(
      '#!/bin/sh\necho "gcloud $4"\ncase "$*" in *"--command=cd "*) exit 7;; esac\n')
  (bin_dir / "gcloud").chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TMPDIR=str(tmp_path))
  result = run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), "all", "--", "--workdir=/w"],
               env=env)
  assert result.returncode == 7
  assert result.stdout.splitlines() == ["gcloud create", "gcloud scp", "gcloud ssh",
                                        "gcloud ssh", "gcloud delete"]


@pytest.mark.parametrize("args, message", [
    ([], "no subcommand; give one of create, copy, run, delete, all"),
    (["--dry-run", "run"], "'run' needs main.py's arguments after '--'"),
    (["--dry-run", "start"], "unknown argument 'start'"),
    (["--dry-run", "--name=Bad_Name", "delete"], "TPU name 'Bad_Name' is not valid"),
])
def test_tpu_pod_bad_arguments_fail_with_one_sentence(args, message):
  result = run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), *args])
  assert result.returncode == 2 and result.stdout == ""
  assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


# --- launch/slurm.sh + slurm.sbatch --------------------------------------------------------


def test_slurm_dry_run_prints_sbatch_command_and_rendered_script():
  result = run(["bash", os.path.join(LAUNCH, "slurm.sh"), "--dry-run", "--nodes=4",
                "--gpus-per-node=4", "--partition=gpu", "--time=2:00:00", "--",
                "--config=configs/clip.py:model=B/16", "--workdir=/shared/runs/clip"])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "# 16 processes: 4 nodes x 4 GPUs, one process per GPU"
  assert lines[1] == (f"sbatch --export=ALL,LANG_IMAGE_REPO={ROOT} <rendered script> "
                      "--config=configs/clip.py:model=B/16 --workdir=/shared/runs/clip")
  script = lines[3:]
  assert script[0] == "#!/bin/bash"
  directives = [l for l in script if l.startswith("#SBATCH")]
  assert {"#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
          "#SBATCH --partition=gpu", "#SBATCH --time=2:00:00"} <= set(directives)
  assert not any("--account" in d for d in directives)
  assert any(l.startswith("srun ") and "main.py" in l for l in script)


def test_slurm_submits_and_the_batch_script_runs_srun(tmp_path):
  env = fake_bin(tmp_path, "sbatch")
  result = run(["bash", os.path.join(LAUNCH, "slurm.sh"), "--nodes=2", "--", "--config=c.py",
                "--workdir=/w"], env=env)
  assert result.returncode == 0, result.stderr
  out = result.stdout.splitlines()
  assert out[:2] == ["sbatch called", f"--export=ALL,LANG_IMAGE_REPO={ROOT}"]
  assert out[3:] == ["--config=c.py", "--workdir=/w"]
  # The batch script, run as SLURM would run it on the first node, starts one srun step.
  env = dict(fake_bin(tmp_path, "srun"), LANG_IMAGE_REPO=ROOT)
  result = run(["bash", os.path.join(LAUNCH, "slurm.sbatch"), "--config=c.py", "--workdir=/a b"],
               env=env)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[1:] == [
      "srun called", "--kill-on-bad-exit=1", "--cpu-bind=none", "python", "main.py",
      "--config=c.py", "--workdir=/a b"]


@pytest.mark.parametrize("args, message", [
    (["--nodes=0", "--", "x"], "--nodes=0 is not a positive whole number"),
    (["--dry-run"], "no arguments for main.py; put them after '--'"),
    (["--gpus=8", "--", "x"], "unknown argument '--gpus=8'"),
])
def test_slurm_bad_arguments_fail_with_one_sentence(args, message):
  result = run(["bash", os.path.join(LAUNCH, "slurm.sh"), *args])
  assert result.returncode == 2 and result.stdout == ""
  assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


# --- a real multi-process run ------------------------------------------------------------


def main_args(workdir, data_dir, zero_shot=True):
  """A small CLIP on the tiny data; evaluation settings do not change what is trained."""
  return [f"--config={os.path.join(ROOT, 'configs', 'clip.py')}:steps={STEPS},batch=16,data=shapes",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.variant=tiny", "--config.model.image_size=32", "--config.log_every=1",
          "--config.checkpoint_every=2", "--config.eval.batch_size=240",
          f"--config.eval.zero_shot={zero_shot}", "--config.eval.retrieval=False"]


def launch_local(processes, devices, workdir, data_dir, logdir, zero_shot=True):
  return run([sys.executable, os.path.join(LAUNCH, "local.py"), f"--processes={processes}",
              f"--devices={devices}", f"--logdir={logdir}", "--",
              *main_args(workdir, data_dir, zero_shot)], timeout=600)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_data_dir):
  """launch/local.py: 2 processes x 4 CPU devices, STEPS steps, checkpoints at 2 and STEPS."""
  base = tmp_path_factory.mktemp("local")
  workdir = str(base / "run")
  result = launch_local(2, 4, workdir, tiny_data_dir, base / "logs")
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(base=base, workdir=workdir, result=result,
              losses=train_losses(workdir), state=saved_state(workdir, STEPS))


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_evaluate_once(two_process_run):
  run_, workdir = two_process_run["result"], two_process_run["workdir"]
  assert "Process 0 of 2 (explicit, coordinator 127.0.0.1:" in run_.stderr
  assert "4 of 8 devices are local" in run_.stderr
  # Only process 0's output is streamed; process 1's is in its log.
  assert [l for l in run_.stdout.splitlines() if l.startswith("final ")] == [
      run_.stdout.strip().splitlines()[-1]]
  with open(two_process_run["base"] / "logs" / "process_1.log") as f:
    other = f.read()
  assert "Process 1 of 2 (explicit" in other
  assert any(l.startswith("final ") and "zero_shot/top1=" in l for l in other.splitlines())
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", str(STEPS)]
  assert sorted(os.listdir(os.path.join(workdir, "eval"))) == [f"step_{STEPS:08d}.json"]
  with open(os.path.join(workdir, "eval", f"step_{STEPS:08d}.json")) as f:
    assert "zero_shot/top1" in json.load(f)["metrics"]
  # Process 1 logs instead of writing TensorBoard files: one event file, every step in it.
  assert len(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))) == 1
  assert sorted(two_process_run["losses"]) == list(range(1, STEPS + 1))
  assert int(two_process_run["state"]["step"]) == STEPS


@pytest.mark.slow
def test_two_processes_resume_from_a_checkpoint_exactly(two_process_run, tiny_data_dir):
  workdir = two_process_run["workdir"]
  resumed = os.path.join(str(two_process_run["base"]), "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", str(STEPS)))
  shutil.rmtree(os.path.join(resumed, "eval"))
  for path in glob.glob(os.path.join(resumed, "events.out.tfevents.*")):
    os.remove(path)
  result = launch_local(2, 4, resumed, tiny_data_dir, two_process_run["base"] / "logs_resumed",
                        zero_shot=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from checkpoint step 2" in result.stderr
  assert sorted(os.listdir(os.path.join(resumed, "checkpoints"))) == ["2", str(STEPS)]
  assert sorted(os.listdir(os.path.join(resumed, "eval"))) == [f"step_{STEPS:08d}.json"]
  # The resumed run reads the same batch 3 and reaches the same state, bit for bit.
  assert train_losses(resumed) == {STEPS: two_process_run["losses"][STEPS]}
  for a, b in zip(jax.tree.leaves(two_process_run["state"]["params"]),
                  jax.tree.leaves(saved_state(resumed, STEPS)["params"])):
    np.testing.assert_array_equal(a, b)


def launcher_module():
  """launch/local.py as a module (its free_port and per-process environment)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("launch_local", os.path.join(LAUNCH, "local.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_preempting_one_of_two_processes_stops_both_at_one_step_with_one_checkpoint(
    tmp_path, tiny_data_dir):
  import signal
  import time
  local = launcher_module()
  workdir, port = str(tmp_path / "run"), local.free_port()
  args = main_args(workdir, tiny_data_dir, zero_shot=False)
  args[0] = args[0].replace(f"steps={STEPS}", "steps=100000")
  # No periodic checkpoint: the only one is the preemption's (each flag given once).
  args = [a for a in args if not a.startswith("--config.checkpoint_every=")]
  args += ["--config.checkpoint_every=100000"]
  procs, logs = [], [str(tmp_path / f"process_{i}.log") for i in range(2)]
  for i in range(2):
    env = dict(os.environ, PYTHONPATH=ROOT, **local.process_env(os.environ, i, 2, 2, port))
    with open(logs[i], "w") as log:
      procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args],
                                    env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=ROOT))
  try:
    metrics = os.path.join(workdir, "train_metrics.jsonl")
    deadline = time.time() + 300
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
      assert all(p.poll() is None for p in procs), open(logs[0]).read()[-3000:]
      assert time.time() < deadline, "the run did not get going"
      time.sleep(0.2)
    signalled = time.time()
    procs[1].send_signal(signal.SIGTERM)  # Only process 1 is preempted.
    codes = [p.wait(timeout=120) for p in procs]
    seconds = time.time() - signalled
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  texts = [open(path).read() for path in logs]
  assert codes == [0, 0], texts[0][-3000:] + texts[1][-3000:]
  assert seconds < 60, seconds
  assert "SIGTERM received" in texts[1]
  line = next(l for l in texts[0].splitlines() if "Preempted at step " in l)
  stopped = int(line.split("Preempted at step ")[1].split(":")[0])
  # Both processes saved the same step: one complete checkpoint, of that step.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(stopped)]
  assert int(saved_state(workdir, stopped)["step"]) == stopped
  with open(os.path.join(workdir, "checkpoints", str(stopped), "data", "metadata")) as f:
    position = json.load(f)
  # The data position too: each process has read its 8 rows of every batch up to that step.
  assert position["next_batch"] == stopped
  assert [p["next_record"] for p in position["processes"]] == [8 * stopped, 8 * stopped]
