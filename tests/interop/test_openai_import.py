"""OpenAI CLIP / open_clip state_dicts, written here from a transformers model's weights in
OpenAI's naming, import into towers that compute what the transformers model computes."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from conftest import IMAGE_SIZE, hf_embeddings, lang_image_embeddings, random_inputs
from lang_image.interop import pretrained
from lang_image.interop.tensors import CheckpointError

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def openai_state_dict(model) -> dict:
  """The transformers CLIPModel's weights under OpenAI's names (see openai/CLIP model.py)."""
  hf = {k: v.detach().clone() for k, v in model.state_dict().items()}
  out = {"visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
         "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
         "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
         "visual.proj": hf["visual_projection.weight"].T.contiguous(),
         "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
         "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
         "text_projection": hf["text_projection.weight"].T.contiguous(),
         "logit_scale": hf["logit_scale"]}
  for ours, theirs in (("visual.ln_pre", "vision_model.pre_layrnorm"),
                       ("visual.ln_post", "vision_model.post_layernorm"),
                       ("ln_final", "text_model.final_layer_norm")):
    for p in ("weight", "bias"):
      out[f"{ours}.{p}"] = hf[f"{theirs}.{p}"]
  for ours, theirs, depth in (("visual.transformer", "vision_model", 2),
                              ("transformer", "text_model", 2)):
    for i in range(depth):
      o, t = f"{ours}.resblocks.{i}", f"{theirs}.encoder.layers.{i}"
      for p in ("weight", "bias"):
        out[f"{o}.attn.in_proj_{p}"] = torch.cat(
            [hf[f"{t}.self_attn.{x}_proj.{p}"] for x in "qkv"])
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("attn.out_proj", "self_attn.out_proj"), ("mlp.c_fc", "mlp.fc1"),
                     ("mlp.c_proj", "mlp.fc2")):
          out[f"{o}.{a}.{p}"] = hf[f"{t}.{b}.{p}"]
  return out


def open_clip_config(**model_cfg):
  return {"model_cfg": {"embed_dim": 24, "quick_gelu": True,
                        "vision_cfg": {"width": 48, "layers": 2, "patch_size": 8,
                                       "image_size": IMAGE_SIZE, "head_width": 12},
                        "text_cfg": {"width": 40, "heads": 4, "layers": 2}, **model_cfg},
          "preprocess_cfg": {"mean": CLIP_MEAN, "std": CLIP_STD}}


def write(directory, state, name, config=None):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  if name.endswith(".safetensors"):
    save_file({k: v.contiguous() for k, v in state.items()}, path)
  else:
    torch.save(state, path)
  if config is not None:
    with open(os.path.join(directory, "open_clip_config.json"), "w") as f:
      json.dump(config, f)
  return path


class Holder(nn.Module):
  """A scriptable module that only holds parameters: TorchScript archives like OpenAI's."""

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x


def torchscript_archive(state, path):
  root = Holder()
  for name, value in state.items():
    *parents, leaf = name.split(".")
    node = root
    for part in parents:
      if not hasattr(node, part):
        node.add_module(part, Holder())
      node = getattr(node, part)
    node.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
  torch.jit.save(torch.jit.script(root), path)
  return path


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("layout", ["pt", "safetensors", "torchscript", "training_checkpoint"])
def test_openai_state_dict_equals_transformers(hf_dir, tmp_path, layout):
  _, model = hf_dir
  state = openai_state_dict(model)
  config = open_clip_config()
  directory = str(tmp_path / layout)
  if layout == "pt":
    path = write(directory, state, "model.pt", config)
  elif layout == "safetensors":
    path = write(directory, state, "open_clip_model.safetensors", config)
  elif layout == "torchscript":
    write(directory, {}, "unused.pt", config)
    path = torchscript_archive(state, os.path.join(directory, "ViT-tiny.pt"))
  else:  # open_clip's training checkpoints wrap DistributedDataParallel's names.
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = write(directory, wrapped, "epoch_3.pt", config)
  towers, arch = pretrained.load(f"openai:{path}")
  assert (arch.image.heads, arch.text.heads, arch.text_pool, arch.act) == (4, 4, "argmax",
                                                                           "quick_gelu")
  images, tokens = random_inputs(seed=2)
  for name, e, g in zip(("image", "text", "logits"), hf_embeddings(model, images, tokens),
                        lang_image_embeddings(towers, images, tokens)):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5, err_msg=name)


def test_without_open_clip_config_openai_conventions_apply(hf_dir, tmp_path):
  _, model = hf_dir
  path = write(str(tmp_path), openai_state_dict(model), "ViT.pt")
  with pytest.raises(CheckpointError, match="cannot tell the attention heads .* open_clip_config"):
    pretrained.read(f"openai:{path}")


@pytest.mark.parametrize("edit, message", [
    (lambda s, c: s.update({"visual.layer1.0.conv1.weight": torch.zeros(1)}),
     "ResNet image tower"),
    (lambda s, c: s.pop("ln_final.weight"), "lacks 'ln_final.weight'"),
    (lambda s, c: s.pop("transformer.resblocks.1.mlp.c_fc.bias"),
     "lacks 'transformer.resblocks.1.mlp.c_fc.bias'"),
    (lambda s, c: s.update({"visual.transformer.resblocks.0.ls_1.gamma": torch.zeros(48)}),
     "do not model, e.g. \\['visual.transformer.resblocks.0.ls_1.gamma'\\]"),
    (lambda s, c: c["model_cfg"]["vision_cfg"].update(attentional_pool=True),
     "vision_cfg option attentional_pool=True is not supported"),
    (lambda s, c: c["model_cfg"]["text_cfg"].update(pool_type="last"),
     "text_cfg option pool_type='last' is not supported"),
    (lambda s, c: c["preprocess_cfg"].update(mean=[0.1, 0.2, 0.3]),
     "match none of the known normalisations"),
])
def test_unsupported_state_dicts_name_what_is_missing(hf_dir, tmp_path, edit, message):
  _, model = hf_dir
  state, config = openai_state_dict(model), open_clip_config()
  edit(state, config)
  path = write(str(tmp_path), state, "model.pt", config)
  with pytest.raises(CheckpointError, match=message) as info:
    pretrained.read(f"openai:{path}")
  assert "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    pretrained.read(f"openai:{tmp_path / 'missing.pt'}")
  junk = tmp_path / "junk.pt"
  junk.write_bytes(b"not a checkpoint")
  with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint that can be read"):
    pretrained.read(f"openai:{junk}")
