"""Weights in and out: OpenAI CLIP / open_clip and Hugging Face CLIP checkpoints.

  pretrained.py    config.init=hf:DIR | openai:FILE: import into lang_image's towers
  hf.py            transformers CLIPModel folders, both ways (names and layouts)
  openai.py        OpenAI / open_clip ViT state_dicts (names and layouts)
  architecture.py  the tower shapes a checkpoint describes; tensor layouts
  tensors.py       reading .safetensors / .pt / .bin / TorchScript files
  bpe.py           CLIP's byte-level BPE tokenizer (no PyTorch needed)
  export.py        python -m lang_image.interop.export: to a CLIPModel folder

Reading .safetensors and writing needs `safetensors`; .pt / .bin files need PyTorch: both come
with the interop extra (pip install -e '.[interop]'). Training imports only
what reads config.init; PyTorch and safetensors are imported only when such files are read.
"""
