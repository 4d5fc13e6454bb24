"""Config parsing and validation: one clear sentence per problem, before compiling."""

import os

import pytest

from configs import clip as clip_config
from lang_image import config as config_lib
from lang_image.errors import ConfigError


def test_arg_string_scales_the_config():
  c = clip_config.get_config("model=B/16,batch=4096,steps=100")
  assert (c.model.image, c.model.text, c.batch_size, c.total_steps) == ("B/16", "B", 4096, 100)
  assert c.model.image_size == 224
  assert clip_config.get_config(None).model.image == "mu/8"


def test_unknown_arg_lists_known_ones():
  with pytest.raises(ConfigError, match="unknown config argument 'modle'; did you mean 'model'"):
    clip_config.get_config("modle=B/16")
  with pytest.raises(ConfigError, match="not a valid int"):
    clip_config.get_config("batch=many")


def test_valid_default_config_passes(tmp_path):
  config_lib.validate(clip_config.get_config(), str(tmp_path / "w"), device_count=1)


@pytest.mark.parametrize("edit, devices, message", [
    (lambda c: setattr(c, "batch_size", 100), 8, "not divisible by the 8 data-parallel"),
    (lambda c: setattr(c, "batch_size", -8), 1,
     "^config.batch_size must be a positive number of pairs, got -8; pass batch=N"),
    (lambda c: setattr(c, "batch_size", 0), 8, "must be a positive number .* got 0;"),
    (lambda c: c.mesh.update(data=3, fsdp=1), 8, "uses 3 devices but 8 are present"),
    (lambda c: c.mesh.update(data=-1, fsdp=-1), 8, "more than one axis"),
    (lambda c: c.mesh.update(data=-1, fsdp=3), 8, "not divisible by 3"),
    (lambda c: c.model.update(image="Q/16"), 1, "Q"),
    (lambda c: c.model.update(image_size=60), 1, "not divisible by patch 8"),
    (lambda c: c.model.update(image="mu/14", image_size=56), 1, "power-of-two patch"),
    (lambda c: c.objectives.update({"clap": {"weight": 1.0}}), 1, "unknown objective 'clap'.*'clip'"),
    (lambda c: c.objectives.clip.update(weight=float("nan")), 1, "finite number"),
    (lambda c: c.optim.update(lr=-1.0), 1, "positive finite"),
    (lambda c: c.data.update(data_dir="/no/such/dir"), 1, "does not exist"),
    (lambda c: setattr(c, "max_nonfinite_steps", -1), 1, "max_nonfinite_steps must be at least 0"),
    (lambda c: setattr(c, "log_every", 0), 1, "log_every must be at least 1"),
    (lambda c: c.model.update(matmul_precision="int8"), 1,
     "unknown config.model.matmul_precision 'int8'; use one of"),
    (lambda c: setattr(c, "keep_checkpoints", 0), 1, "keep_checkpoints must be at least 1"),
])
def test_bad_configs_fail_with_one_sentence(tmp_path, edit, devices, message):
  c = clip_config.get_config()
  c.unlock() if hasattr(c, "unlock") else None
  edit(c)
  with pytest.raises(ConfigError, match=message) as info:
    config_lib.validate(c, str(tmp_path / "w"), device_count=devices)
  assert "\n" not in str(info.value)


def test_workdir_under_a_file_cannot_be_written(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ConfigError, match="workdir .* cannot be written"):
    config_lib.validate(clip_config.get_config(), str(blocker / "w"), device_count=1)


def test_override_explanations():
  c = clip_config.get_config()
  assert config_lib.explain_override(c, "data.data_dir=/tmp") is None
  assert config_lib.explain_override(c, "optim.lr=3e-4") is None
  assert "did you mean 'lr'" in config_lib.explain_override(c, "optim.lrr=1")
  assert "not a valid float" in config_lib.explain_override(c, "optim.lr=fast")
  assert "not a valid bool" in config_lib.explain_override(c, "eval.retrieval=maybe")


@pytest.mark.parametrize("name", ["clip", "siglip", "rankclip"])
def test_every_config_file_loads_and_validates(tmp_path, name):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = config_lib.load_config_file(f"{root}/configs/{name}.py:model=B/16,batch=64")
  config_lib.validate(config, str(tmp_path / "w"), device_count=8)
  assert name in config.objectives
