"""Checks a main.py command line without training:

    python tests/check_command_line.py [LAUNCHER ARGS --] MAIN_ARGS

MAIN_ARGS (everything after the first `--`, if there is one) go through main.py's own flag
parsing, so a repeated flag, a bad override or a bad config file stops here with main.py's
sentence and exit status 2; the config is then validated against this machine's devices as
main.py validates it, and every data source it names other than the embedded `shapes` data
is opened (indexes go under $LANG_IMAGE_DATA_DIR). Prints one JSON line describing the run
the command would start. tests/test_readme_commands.py puts this in place of `python
main.py` (or of a launcher) to check commands that need accelerators or a cluster.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main as entry  # noqa: E402  (the repository's main.py)
from lang_image import config as config_lib  # noqa: E402
from lang_image.errors import ConfigError  # noqa: E402


def describe(args):
  entry.parse_flags(["main.py", *args])
  config, workdir = entry._CONFIG.value, entry._WORKDIR.value
  try:
    config_lib.validate(config, workdir)
    sources = []
    if config.data.name.strip() != "shapes":
      from lang_image.data import pipeline
      opened, _ = pipeline.open_sources(config.data)
      sources = [{"records": len(s), "shards": len(getattr(s, "shards", ()))} for s in opened]
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  return {"objectives": sorted(config.objectives), "model": config.model.image,
          "batch": config.batch_size, "steps": config.total_steps, "data": config.data.name,
          "csv_separator": config.data.csv_separator, "workdir": workdir,
          "sources": sources}


if __name__ == "__main__":
  argv = sys.argv[1:]
  if "--" in argv:
    argv = argv[argv.index("--") + 1:]
  print(json.dumps(describe(argv)))
