"""`python main.py --help` exits 0 and shows the configs, the arg-string keys with their
defaults and how to list and set every field; with --config it lists that config's fields."""

import os
import subprocess
import sys

import cli_runs
from configs import common

MAIN = os.path.join(cli_runs.ROOT, "main.py")


def run(*args):
  return subprocess.run([sys.executable, MAIN, *args], env=cli_runs.env(), capture_output=True,
                        text=True, timeout=300, cwd=cli_runs.ROOT)


def test_help_lists_configs_arg_keys_and_fields():
  result = run("--help")
  assert result.returncode == 0, result.stderr[-2000:]
  out = result.stdout
  for name in ("clip", "siglip", "nclip", "xclip", "rankclip", "cliplite"):
    assert f"configs/{name}.py" in out
  assert ("configs/xclip.py       xCLIP: CLIP + lambda nCLIP on shared towers, separate heads "
          "(Zhou et al., CVPR 2023).") in out
  for key, value in common.ARG_DEFAULTS.items():
    assert f"  {key}={value} " in out, key
  assert "global batch size" in out and "--config.FIELD=VALUE" in out
  assert "python main.py --config=configs/xclip.py --help" in out
  assert "configs/common.py" not in out


def test_help_with_a_config_lists_its_fields_and_arg_string_values():
  result = run("--config=configs/nclip.py:batch=64", "--help")
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert "  batch_size = 64" in lines
  assert "  optim.lr = 0.001" in lines
  assert "  objectives.nclip.teacher_temp = 0.04" in lines
  assert "  eval.dataset = 'auto'" in lines and "  wandb.enabled = False" in lines


def test_help_with_a_missing_config_says_so():
  result = run("--config=configs/nope.py", "--help")
  assert result.returncode == 2 and "config file 'configs/nope.py' does not exist" in result.stderr
