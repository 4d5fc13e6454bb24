"""Which eval set a training run evaluates on (config.eval.dataset), and why.

'auto' (the default) follows the training data: a run on a built-in dataset (`scenes`, `shapes`)
evaluates on that dataset's eval split; a run on one's own data evaluates only on what the
config names, so that it never reports the embedded data's numbers as its own. Any other
value is an eval set name (`eval_sets`): 'shapes', a prepared tfds set, a labelled folder in
CLIP_benchmark's layout, or a data source; 'none' switches evaluation off.
"""

from __future__ import annotations

from lang_image.data import pipeline, sources

AUTO = "auto"
NONE = "none"


def _builtin(spec: str) -> bool:
  try:
    return sources.kind_of(spec).builtin
  except sources.DataError:
    return False


def choose(config) -> tuple[str, str]:
  """(the eval set's name, or '' for no evaluation; one sentence saying why)."""
  name = str(config.eval.dataset).strip()
  data = str(config.data.name)
  specs = [spec for spec, _ in pipeline.parse_mixture(data)]
  if name == NONE:
    return "", "config.eval.dataset is 'none'"
  if name != AUTO:
    own = "" if all(_builtin(s) for s in specs) or name != "shapes" else (
        f" (the embedded data, not the training data {data})")
    return name, f"config.eval.dataset names it{own}"
  builtin = [s for s in specs if _builtin(s)]
  if len(builtin) == len(specs) and len(set(builtin)) == 1:
    return builtin[0], f"the run trains on the built-in dataset '{builtin[0]}' (eval.dataset=auto)"
  return "", (f"the run trains on its own data ({data}) and config.eval.dataset names no eval "
              "set; name one, e.g. --config.eval.dataset=/data/mytest (CLIP_benchmark's "
              "layout with classnames.txt), csv:/data/test.csv with a label column, or "
              "wds:/data/val/{0..3}.tar for retrieval")


def announce(name: str, reason: str) -> str:
  """The log line about the choice."""
  if not name:
    return f"No evaluation: {reason}."
  return f"Evaluating on '{name}': {reason}."
