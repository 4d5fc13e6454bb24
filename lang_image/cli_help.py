"""`python main.py --help`: the configs, their arg-string keys, and how to see every field.

`text(configs_dir)` lists each configs/*.py with the first line of its docstring, the
arg-string keys (configs/common.py's ARG_DEFAULTS, with a config's own ARG_DEFAULTS where it
has one) with their defaults and meanings, and the override syntax. `fields(config)` lists
every field of one config with its default, for `main.py --config=configs/clip.py --help`.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re

USAGE = """\
Trains a language-image model.

usage: python main.py --config=CONFIG[:ARGS] --workdir=DIR [--config.FIELD=VALUE ...]

  --config    a config file, optionally with an arg string after a colon,
              e.g. configs/clip.py:model=B/16,batch=4096
  --workdir   where checkpoints, logs, evaluations and pictures go (a finished run
              there is reported, not redone; --config.force_eval=True evaluates again)
"""


def _docstring(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return ast.get_docstring(ast.parse(f.read())) or ""


def _module(path: str):
  spec = importlib.util.spec_from_file_location("_lang_image_help_" + os.path.basename(path)[:-3],
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _key_meanings(common_doc: str) -> dict[str, str]:
  """'key  meaning ...' entries of the 'Arg string keys' block of configs/common.py."""
  meanings, key = {}, None
  for line in common_doc.splitlines():
    match = re.match(r"^  (\w+)\s{2,}(.*)$", line)
    if match:
      key = match.group(1)
      meanings[key] = match.group(2).strip()
    elif key and line.startswith("     ") and line.strip():
      meanings[key] += " " + line.strip()
    elif not line.strip():
      key = None if meanings else key
  return meanings


def config_files(configs_dir: str) -> list[str]:
  return sorted(os.path.join(configs_dir, f) for f in os.listdir(configs_dir)
                if f.endswith(".py") and f not in ("__init__.py", "common.py"))


def text(configs_dir: str) -> str:
  out = [USAGE, "configs:"]
  files = config_files(configs_dir)
  for path in files:
    first = ""
    for line in _docstring(path).split("\n\n")[0].splitlines():  # up to a line ending in '.'
      first = f"{first} {line.strip()}".strip()
      if first.endswith("."):
        break
    out.append(f"  {os.path.relpath(path, os.path.dirname(configs_dir)):<22} {first}")
  common_path = os.path.join(configs_dir, "common.py")
  defaults = dict(_module(common_path).ARG_DEFAULTS)
  meanings = _key_meanings(_docstring(common_path))
  out += ["", "arg-string keys (configs/FILE.py:key=value,key=value), with their defaults:"]
  for key, value in defaults.items():
    out.append(f"  {key + '=' + str(value):<16} {meanings.get(key, '')}")
  for path in files:
    own = getattr(_module(path), "ARG_DEFAULTS", None)
    extra = {k: v for k, v in (own or {}).items() if defaults.get(k, object()) != v}
    if extra:
      out.append(f"  {os.path.basename(path)} also: " +
                 ", ".join(f"{k}={v}" for k, v in extra.items()))
  out += ["", "fields: every config field can be set with --config.FIELD=VALUE, e.g.",
          "  --config.optim.lr=3e-4 --config.eval_every=50 --config.eval.dataset=/data/mytest",
          "  --config.wandb.enabled=True",
          "list one config's fields and their defaults with",
          "  python main.py --config=configs/xclip.py --help",
          "(absl's own flags: --helpfull)"]
  return "\n".join(out) + "\n"


def fields(config, spec: str) -> str:
  """Every field of `config` (from --config=`spec`) with its value, one per line."""
  lines = [f"fields of {spec} (override any with --config.FIELD=VALUE):"]

  def walk(prefix, node):
    for key in sorted(node.keys()):
      value = node[key]
      if hasattr(value, "keys"):
        walk(f"{prefix}{key}.", value)
      else:
        lines.append(f"  {prefix}{key} = {value!r}")
  walk("", config)
  return "\n".join(lines) + "\n"
