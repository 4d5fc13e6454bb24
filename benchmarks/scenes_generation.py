"""Time to generate the scenes benchmark: the single-process rate, then a full `prepare`.

    python -m benchmarks.scenes_generation --variant=default --data_dir=/tmp/scenes_time

Prints examples per second in one process (scenes and, for scale, shapes, in the same run)
and the wall and CPU time of scenes_tfds.prepare (worker processes, one per core) into an
empty directory; with --shapes also of shapes_tfds.prepare. On a shared machine only the ratios within one run mean much.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags

_VARIANT = flags.DEFINE_string("variant", "default", "Size: default or tiny.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Empty: a fresh temporary directory.")
_RATE_EXAMPLES = flags.DEFINE_integer("rate_examples", 400, "Examples for the rates.")
_SHAPES = flags.DEFINE_bool("shapes", False, "Also time a full prepare of shapes (same variant), "
                            "for a ratio taken in the same run.")


def _rate(encoded_examples, n: int) -> float:
  start = time.perf_counter()
  encoded_examples("train", 0, n)
  return n / (time.perf_counter() - start)


def main(argv):
  del argv
  from lang_image.data import scenes, scenes_tfds, shapes  # noqa: PLC0415
  n = _RATE_EXAMPLES.value
  scenes_rate, shapes_rate = _rate(scenes.encoded_examples, n), _rate(shapes.encoded_examples, n)
  print(f"single process: scenes {scenes_rate:.0f} examples/s, shapes {shapes_rate:.0f} "
        f"examples/s (ratio {scenes_rate / shapes_rate:.2f})")
  data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="scenes_time_")
  if os.path.exists(scenes_tfds.versioned_dir(data_dir)):
    shutil.rmtree(scenes_tfds.versioned_dir(data_dir))
  variant = _VARIANT.value
  _time(f"scenes {variant} (version {scenes.version()})",
        sum(scenes.SPLIT_SIZES[variant].values()), lambda: scenes_tfds.prepare(data_dir, variant))
  if _SHAPES.value:
    from lang_image.data import shapes_tfds  # noqa: PLC0415
    shapes_dir = tempfile.mkdtemp(prefix="shapes_time_")
    _time(f"shapes {variant}", sum(shapes.SPLIT_SIZES[variant].values()),
          lambda: shapes_tfds.prepare(shapes_dir, variant))
    shutil.rmtree(shapes_dir)


def _time(what: str, total: int, prepare) -> None:
  """Wall time, and CPU time of this process and its finished workers, of one prepare."""
  cpu = lambda: sum(os.times()[:4])  # noqa: E731
  start, cpu_start = time.perf_counter(), cpu()
  prepare()
  seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
  print(f"prepare {what}: {total} examples on {len(os.sched_getaffinity(0))} cores in "
        f"{seconds:.1f} s wall ({total / seconds:.0f} examples/s), {cpu_seconds:.1f} s CPU")


if __name__ == "__main__":
  app.run(main)
