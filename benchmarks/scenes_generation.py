"""Time to generate the scenes benchmark: the single-process rate, then a full `prepare`.

    python -m benchmarks.scenes_generation --variant=default --data_dir=/tmp/scenes_time

Prints examples per second in one process (scenes and, for scale, shapes, in the same run)
and the wall time of scenes_tfds.prepare (worker processes, one per core) into an empty
directory. On a shared machine only the ratios within one run mean much.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags

_VARIANT = flags.DEFINE_string("variant", "default", "Size: default or tiny.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Empty: a fresh temporary directory.")
_RATE_EXAMPLES = flags.DEFINE_integer("rate_examples", 400, "Examples for the rates.")


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
  total = sum(scenes.SPLIT_SIZES[_VARIANT.value].values())
  start = time.perf_counter()
  scenes_tfds.prepare(data_dir, _VARIANT.value)
  seconds = time.perf_counter() - start
  print(f"prepare {_VARIANT.value} (version {scenes.version()}, {total} examples, "
        f"{len(os.sched_getaffinity(0))} cores): {seconds:.1f} s, {total / seconds:.0f} "
        f"examples/s, in {scenes_tfds.versioned_dir(data_dir)}")


if __name__ == "__main__":
  app.run(main)
