"""Training on researchers' own data: webdataset shards, CSV, JSONL and tfds sets with planted
faults, alone and mixed; exact resume in a new process; disjoint hosts."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ml_collections import ConfigDict

import cli_runs
import data_fixtures
from configs import clip as clip_config
from lang_image import parallel, train
from lang_image.data import pipeline, stream as stream_lib

BATCH = 16


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """One planted data set of every kind."""
  root = tmp_path_factory.mktemp("real")
  return {
      "wds": data_fixtures.write_wds(str(root / "wds")),
      "csv": data_fixtures.write_csv(str(root / "csv")),
      "jsonl": data_fixtures.write_jsonl(str(root / "jsonl")),
      "tfds": data_fixtures.write_tfds(str(root / "tfds")),
  }


def data_config(planted_sets, kinds, weights=None, shuffle=True, data_dir=""):
  data = clip_config.get_config("batch=16").data
  specs = [planted_sets[k].spec for k in kinds]
  if weights:
    specs = [f"{w}*{s}" for w, s in zip(weights, specs)]
  tfds_dirs = [planted_sets[k].data_dir for k in kinds if k == "tfds"]
  data.update(name=";".join(specs), shuffle=shuffle, vocab_size=300, threads=2,
              data_dir=data_dir, tfds_data_dir=tfds_dirs[0] if tfds_dirs else "")
  return data


def consumed_faults(planted_set, good_samples: int) -> tuple[dict, int]:
  """Faults met by an unshuffled single-source stream that has produced `good_samples` good
  samples, counted from the planted positions alone -> (reason -> count, records read)."""
  counts, good, record = {}, 0, 0
  while good < good_samples:
    reason = planted_set.reasons.get(record % planted_set.n)
    if reason:
      counts[reason] = counts.get(reason, 0) + 1
    else:
      good += 1
    record += 1
  return counts, record


@pytest.mark.parametrize("kind", ["wds", "csv", "jsonl", "tfds"])
def test_one_epoch_skips_exactly_the_planted_faults(planted, kind, tmp_path):
  """The unshuffled stream over more than one epoch: the good samples come in the source's
  order with every fault skipped, and the counts per reason equal the planted ones."""
  p = planted[kind]
  good = p.n - len(p.bad)
  steps = -(-good // BATCH) + 1
  data = data_config(planted, [kind], shuffle=False, data_dir=str(tmp_path))
  data.pp = "decode|resize|choose_caption('first')|tokenize"
  dataset = pipeline.open_dataset(data, 16, 32)
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  s = stream_lib.TrainStream(dataset, dataset.data_cfg, BATCH, parallel.batch_sharding(mesh), 0)
  texts = np.concatenate([s.next_local()["text"] for _ in range(steps)])
  expected, records = consumed_faults(p, steps * BATCH)
  assert dict(s.skipped) == expected
  assert all(expected.get(r, 0) >= n for r, n in p.counts.items())  # every fault met
  assert s.state()["next_record"] == records
  good_captions = [c for c in p.captions if c is not None]
  want = [c if isinstance(c, str) else c[0] for c in good_captions]
  want = (want * 3)[:steps * BATCH]
  np.testing.assert_array_equal(texts, dataset.tokenizer.encode(want, 16))
  assert texts.shape == (steps * BATCH, 16)


def run_config(planted_sets, kinds, workdir_data, steps, weights=None, shuffle=True):
  config = clip_config.get_config(f"batch={BATCH},steps={steps}")
  config.data = data_config(planted_sets, kinds, weights, shuffle, workdir_data)
  config.model.max_len = 16
  config.log_every = steps
  config.checkpoint_every = 0
  config.eval.update(dataset=planted_sets[kinds[0]].spec, zero_shot=False, linear_probe=False,
                     knn=False, pictures=False, source_examples=64)
  return config


@pytest.mark.parametrize("kinds", [
    pytest.param(("csv",), marks=pytest.mark.slow), pytest.param(("jsonl",), marks=pytest.mark.slow),
    pytest.param(("tfds",), marks=pytest.mark.slow), ("wds", "csv", "jsonl", "tfds")],
    ids=["csv", "jsonl", "tfds", "mixture"])
def test_training_runs_on_each_kind_and_a_mixture(planted, kinds, tmp_path):
  """A few training steps end to end (tokenizer trained on first use, retrieval evaluation
  on the first source): the loss is finite, skipped samples are logged per reason, and the
  counts of an unshuffled single source match the planted faults it passed."""
  steps = 3
  config = run_config(planted, kinds, str(tmp_path / "data"), steps,
                      weights=[0.4, 0.3, 0.2, 0.1] if len(kinds) > 1 else None,
                      shuffle=len(kinds) > 1)
  metrics = train.run(config, str(tmp_path / "run"))
  assert "retrieval/i2t_r1" in metrics
  records = train.read_train_metrics(str(tmp_path / "run"))
  assert np.isfinite(records[-1]["clip/loss"])
  logged = {k.rpartition("/")[2]: v for k, v in records[-1].items()
            if k.startswith("data/skipped/")}
  assert set(logged) == set(stream_lib.REASONS)
  if len(kinds) == 1:
    expected, _ = consumed_faults(planted[kinds[0]], steps * BATCH)
    assert {k: v for k, v in logged.items() if v} == expected
  else:
    assert sum(logged.values()) > 0
  assert os.listdir(tmp_path / "data" / "tokenizers")


def test_the_documented_wds_command_trains(planted, tmp_path):
  """docs/data.md, "Your own data": main.py with data=wds:<brace pattern> in the config arg."""
  pattern = os.path.join(os.path.dirname(planted["wds"].files[0]), "{00000..00003}.tar")
  (tmp_path / "data").mkdir()
  result = subprocess.run(
      [sys.executable, os.path.join(cli_runs.ROOT, "main.py"),
       f"--config={cli_runs.ROOT}/configs/clip.py:data=wds:{pattern},batch=16,steps=4",
       f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'data'}",
       "--config.data.vocab_size=300", "--config.model.max_len=16",
       f"--config.eval.dataset=wds:{pattern}", "--config.eval.zero_shot=False",
       "--config.eval.linear_probe=False", "--config.eval.knn=False",
       "--config.eval.pictures=False", "--config.log_every=2"],
      env=cli_runs.env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "retrieval/i2t_r1=" in result.stdout.splitlines()[-1]
  assert "Skipped sample" in result.stderr


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ml_collections import ConfigDict
    from lang_image import parallel
    from lang_image.data import pipeline, stream as stream_lib
    configs, phase, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
    states = {} if phase == "first" else json.load(open(out + "/states.json"))
    arrays = {}
    for name, data in configs.items():
      dataset = pipeline.open_dataset(ConfigDict(data), 16, 32)
      s = stream_lib.TrainStream(dataset, dataset.data_cfg, 16, parallel.batch_sharding(mesh),
                                 0, state=states.get(name))
      batches = [s.next_local() for _ in range(3)]
      if phase == "first":
        states[name] = stream_lib.gather_state(s)
      for i, b in enumerate(batches):
        arrays[f"{name}/{i}/image"], arrays[f"{name}/{i}/text"] = b["image"], b["text"]
    json.dump(states, open(out + "/states.json", "w"))
    np.savez(out + f"/{phase}.npz", **arrays)
""")


def test_every_kind_resumes_exactly_in_a_new_process(planted, tmp_path):
  """Read 3 batches in one process and save the position, restore it in a second process and
  read 3 more: for every kind and a mixture, the 6 batches equal those of one uninterrupted
  read (shuffled, randomly cropped, with skips)."""
  data_dir = str(tmp_path / "data")
  configs = {kind: data_config(planted, [kind], data_dir=data_dir).to_dict()
             for kind in planted}
  configs["mixture"] = data_config(planted, ["wds", "csv", "jsonl", "tfds"], [4, 3, 2, 1],
                                   data_dir=data_dir).to_dict()
  for phase in ("first", "second"):
    result = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, json.dumps(configs), phase,
                             str(tmp_path)], env=cli_runs.env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
  got = {**np.load(tmp_path / "first.npz"),
         **{k.replace("/", "/r", 1): v for k, v in np.load(tmp_path / "second.npz").items()}}
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  for name, data in configs.items():
    dataset = pipeline.open_dataset(ConfigDict(data), 16, 32)
    s = stream_lib.TrainStream(dataset, dataset.data_cfg, 16, parallel.batch_sharding(mesh), 0)
    for i in range(6):
      batch = s.next_local()
      key = f"{name}/{i}" if i < 3 else f"{name}/r{i - 3}"
      np.testing.assert_array_equal(got[key + "/image"], batch["image"], err_msg=key)
      np.testing.assert_array_equal(got[key + "/text"], batch["text"], err_msg=key)


@pytest.mark.parametrize("kind", ["wds", "csv"])
def test_two_hosts_read_disjoint_samples_covering_each_epoch(planted, kind, tmp_path):
  """Two processes (simulated): over one epoch of records their samples are disjoint and
  together every good sample exactly once."""
  p = planted[kind]
  dataset = pipeline.open_dataset(data_config(planted, [kind], data_dir=str(tmp_path)), 16, 32)
  mesh = parallel.make_mesh(ConfigDict(dict(data=-1, fsdp=1)))
  seen = []
  for proc in range(2):
    s = stream_lib.TrainStream(dataset, dataset.data_cfg, BATCH, parallel.batch_sharding(mesh),
                               0, process_index=proc, process_count=2)
    for r in range(p.n // 2):  # records proc, proc + 2, ... of the first epoch
      record = s._records[r]
      if "skipped" not in record:
        seen.append((proc, record["caption"]))
  captions = [c for _, c in seen]
  assert len(captions) == len(set(captions))
  good = [c if isinstance(c, str) else c for c in p.captions if c is not None]
  flat = sorted(c if isinstance(c, str) else c[0] for c in good)
  assert sorted(captions) == flat
  assert {proc for proc, _ in seen} == {0, 1}
