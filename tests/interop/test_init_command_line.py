"""From the command line: zero-shot evaluation of an imported model (main.py with
--config.init), and a training run's checkpoint exported back to transformers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import CLIPModel, CLIPTokenizer

from conftest import CONTEXT, IMAGE_SIZE, hf_embeddings, random_inputs
from configs import clip as clip_config
from lang_image import config as config_lib
from lang_image.errors import ConfigError
from lang_image.data import shapes, shapes_tfds
from lang_image.interop import export
from lang_image.interop.tensors import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
              PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")


def quick_eval_flags():
  """Only zero-shot: every other evaluation (and picture) the config has is switched off."""
  eval_cfg = clip_config.get_config().eval
  flags = ["--config.eval.batch_size=240"]
  for name in ("retrieval", "linear_probe", "knn", "pictures"):
    if name in eval_cfg:
      flags.append(f"--config.eval.{name}=False")
  return flags


def transformers_zero_shot(model, tokenizer, data_dir):
  """Top-1 / top-5 (%) on the embedded test split, computed with transformers alone: CLIP's
  pixel statistics, prompts averaged per class as lang_image's evaluator does."""
  source = shapes_tfds.prepare(data_dir, "tiny").as_data_source("test")
  examples = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(e["image"], np.float32) for e in examples]) / 255.0
  labels = np.array([e["label"] for e in examples])
  pixels = torch.as_tensor(((images - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2))
  prompts = [t.format(c) for c in shapes.CLASSES for t in shapes.PROMPT_TEMPLATES]
  tokens = tokenizer(prompts, max_length=CONTEXT, truncation=True, padding="max_length",
                     return_tensors="pt")["input_ids"]
  with torch.no_grad():
    image_emb = model.get_image_features(pixel_values=pixels).pooler_output
    text_emb = model.get_text_features(input_ids=tokens).pooler_output
  image_emb = torch.nn.functional.normalize(image_emb, dim=-1).numpy()
  text_emb = torch.nn.functional.normalize(text_emb, dim=-1).numpy()
  class_emb = text_emb.reshape(len(shapes.CLASSES), -1, text_emb.shape[-1]).mean(axis=1)
  class_emb /= np.linalg.norm(class_emb, axis=-1, keepdims=True)
  order = np.argsort(-(image_emb @ class_emb.T), axis=1)
  return {f"top{k}": 100.0 * np.mean([l in row[:k] for l, row in zip(labels, order)])
          for k in (1, 5)}


def test_zero_shot_of_imported_model_then_export(hf_dir, tiny_data_dir, tmp_path):
  directory, original = hf_dir
  workdir = str(tmp_path / "run")
  # One step: its learning rate is 0 (warm-up starts at 0), so evaluation sees the imported
  # weights unchanged.
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"),
       f"--config={os.path.join(ROOT, 'configs', 'clip.py')}:steps=1,batch=8,data=shapes",
       f"--workdir={workdir}", f"--config.data.data_dir={tiny_data_dir}",
       "--config.data.variant=tiny", f"--config.init=hf:{directory}", *quick_eval_flags()],
      env=env(), capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "step_00000001.json")) as f:
    metrics = json.load(f)["metrics"]
  expected = transformers_zero_shot(original, CLIPTokenizer.from_pretrained(directory),
                                    tiny_data_dir)
  one_image = 100.0 / (10 * len(shapes.CLASSES))  # a near-tie may order differently
  for k in ("top1", "top5"):
    assert abs(metrics[f"zero_shot/{k}"] - expected[k]) <= one_image + 1e-6, (metrics, expected)

  # The run's checkpoint back to transformers: what `python -m lang_image.interop.export
  # --workdir=W --out=DIR` does, in this process (a second command would double the time).
  config = clip_config.get_config("steps=1,batch=8,data=shapes")
  config.data.update(data_dir=tiny_data_dir, variant="tiny")
  config.init = f"hf:{directory}"
  towers, tokenizer = export.restore_towers(config, workdir)
  out = str(tmp_path / "exported")
  export.export_towers(towers, out, image_norm=config.model.image_norm, tokenizer=tokenizer)
  model = CLIPModel.from_pretrained(out).eval()
  assert model.config.vision_config.image_size == IMAGE_SIZE
  images, tokens = random_inputs(seed=4)
  for e, g in zip(hf_embeddings(original, images, tokens), hf_embeddings(model, images, tokens)):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)


def test_export_command_converts_openai_weights(hf_dir, vocab_dir, tmp_path):
  from test_openai_import import open_clip_config, openai_state_dict, write
  _, original = hf_dir
  path = write(str(tmp_path / "openai"), openai_state_dict(original), "model.pt",
               open_clip_config())
  out = str(tmp_path / "hf")
  gz = os.path.join(vocab_dir, "bpe_simple_vocab.txt.gz")
  result = subprocess.run(
      [sys.executable, "-m", "lang_image.interop.export", f"--weights=openai:{path}",
       f"--tokenizer={gz}", f"--out={out}"],
      env=env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  model = CLIPModel.from_pretrained(out).eval()
  images, tokens = random_inputs(seed=5)
  for e, g in zip(hf_embeddings(original, images, tokens), hf_embeddings(model, images, tokens)):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
  assert CLIPTokenizer.from_pretrained(out)("one red star.")["input_ids"] == \
      CLIPTokenizer.from_pretrained(vocab_dir)("one red star.")["input_ids"]


def test_init_sets_the_model_and_tokenizer_fields(hf_dir, vocab_dir, tmp_path):
  directory, _ = hf_dir
  config = clip_config.get_config()
  config.init = f"hf:{directory}"
  config_lib.validate(config, None, device_count=1)
  assert (config.model.image, config.model.text) == ("w48-d2-h4-mlp96/8", "w40-d2-h4-mlp80")
  assert (config.model.image_norm, config.model.text_pool, config.model.max_len) == (
      "clip", "eos", CONTEXT)
  assert config.data.tokenizer == directory

  openai_file = tmp_path / "model.pt"
  torch.save({"logit_scale": torch.zeros(())}, openai_file)
  config = clip_config.get_config()
  config.init = f"openai:{openai_file}"
  with pytest.raises(CheckpointError, match="lacks 'visual.conv1.weight'"):
    config_lib.validate(config, None, device_count=1)
  config.init = "hf:"
  with pytest.raises(ConfigError, match="names no weights"):
    config_lib.validate(config, None, device_count=1)


def test_openai_init_needs_a_vocabulary(hf_dir, vocab_dir, tmp_path):
  from test_openai_import import open_clip_config, openai_state_dict, write
  _, model = hf_dir
  path = write(str(tmp_path), openai_state_dict(model), "model.pt", open_clip_config())
  config = clip_config.get_config()
  config.init = f"openai:{path}"
  with pytest.raises(CheckpointError, match="brings no vocabulary; set config.data.tokenizer"):
    config_lib.validate(config, None, device_count=1)
  config.data.tokenizer = os.path.join(vocab_dir, "bpe_simple_vocab.txt.gz")
  config_lib.validate(config, None, device_count=1)
  assert (config.model.text_pool, config.model.act) == ("argmax", "quick_gelu")
