"""Trains a language-image model: `python main.py --config=configs/xclip.py --workdir=W`.

--config takes a config file, optionally with an arg string after a colon
(`configs/clip.py:model=B/16,batch=4096`), and field overrides (`--config.optim.lr=1e-3`).
Bad configs and environments fail here with one sentence, before anything compiles.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from lang_image import config as config_lib  # noqa: E402
from lang_image.errors import ConfigError  # noqa: E402
from lang_image import distributed  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/clip.py[:arg string].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and evals go.")
flags.mark_flags_as_required(["config", "workdir"])


class _OwnInfoOnly(logging.logging.Filter):
  """Keeps INFO lines from lang_image and clu; libraries (orbax, jax) speak from WARNING, in
  one line each: their tracebacks (a failed checkpoint write logs one per writer thread) are
  left out, since the error they lead to is reported by lang_image in one sentence."""

  LIBRARIES = ("/orbax/", "/jax/", "/jaxlib/", "/grain/", "/tensorflow_datasets/", "/absl/",
               "/asyncio/")

  def filter(self, record):
    library = any(part in record.pathname for part in self.LIBRARIES)
    if library and record.exc_info:
      record.exc_info, record.exc_text = None, None
    if record.name == "asyncio" and "exception was never retrieved" in str(record.msg):
      return False  # Orbax's writers abandoned after a failure they already logged.
    return record.levelno >= logging.logging.WARNING or not library


def parse_flags(argv):
  """absl flag parsing, with one clear sentence instead of a traceback for bad --config.*."""
  repeated = repeated_flag_message(argv[1:])
  if repeated:
    print(f"error: {repeated}", file=sys.stderr)
    sys.exit(2)
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if any(a in ("--help", "-h", "-help", "--h", "-?") for a in argv[1:]):
    _print_help(spec)
  try:
    if spec:  # config_flags defers file errors to first use; surface them now.
      config_lib.load_config_file(spec)
    return flags.FLAGS(argv)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # config_flags raises assorted types for bad overrides.
    message = _explain_flag_error(argv) or str(e).strip().splitlines()[-1]
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def repeated_flag_message(args):
  """One sentence if --config, --workdir or a --config.field override is given more than once
  (absl would keep the last silently), else None."""
  seen = {}
  for arg in args:
    if arg == "--":
      break
    name = arg.split("=", 1)[0]
    if name in ("--config", "--workdir") or name.startswith("--config."):
      seen.setdefault(name, []).append(arg)
  for name, given in seen.items():
    if len(given) > 1:
      shown = ", ".join(given[:3]) + (", ..." if len(given) > 3 else "")
      return (f"{name} is given {len(given)} times ({shown}), and absl would keep only the "
              "last: an unquoted brace pattern such as {00000..00003} is expanded by the shell "
              "into one flag per item, or the flag is repeated; quote the value (e.g. "
              "--config='configs/clip.py:data=wds:/data/{00000..00003}.tar') and give the flag "
              "once.")
  return None


def _print_help(spec):
  """main.py's help (lang_image/cli_help.py), or one config's fields with --config; exits 0."""
  from lang_image import cli_help
  try:
    if spec:
      print(cli_help.fields(config_lib.load_config_file(spec), spec), end="")
    else:
      print(cli_help.text(os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")),
            end="")
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  sys.exit(0)


def _explain_flag_error(argv):
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return None
  try:
    config = config_lib.load_config_file(spec)
  except ConfigError as e:
    return str(e)
  for arg in argv:
    if arg.startswith("--config."):
      message = config_lib.explain_override(config, arg[len("--config."):])
      if message:
        return message
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    distributed.initialize()  # Joins a multi-process job, if any, before devices are used.
    import jax
    if jax.process_index() > 0:  # One voice: the other processes speak only of trouble.
      logging.set_verbosity(logging.WARNING)
    config_lib.validate(config, _WORKDIR.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  # Imported after validation so that bad input fails fast.
  from lang_image import train
  try:
    metrics = train.run(config, _WORKDIR.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except train.TrainingError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if metrics:  # Empty after a preemption (a checkpoint was saved; run again to resume).
    print("final " + ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items())))


def _quiet_closed_loop(unraisable):
  """After a checkpoint write fails, TensorStore still completes the abandoned operations'
  futures, whose callbacks then meet Orbax's closed event loop: one traceback each (dozens),
  saying nothing about the failure, which is reported in one sentence."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return
  sys.__unraisablehook__(unraisable)


if __name__ == "__main__":
  sys.unraisablehook = _quiet_closed_loop
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OwnInfoOnly())
  app.run(main, flags_parser=parse_flags)
