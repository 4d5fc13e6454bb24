"""nCLIP: non-contrastive cross-modal prediction over K prototypes, with mean-entropy
maximisation against collapse (Zhou et al., CVPR 2023).

Zero-shot and retrieval use the heads' prototype distributions (nCLIP trains no joint
embedding of its own); see lang_image/objectives/nclip.py.

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/nclip.py --workdir=/tmp/nclip

Switches: --config.objectives.nclip.anti_collapse=me_max|centering|sinkhorn,
          --config.objectives.nclip.teacher=online|ema.

At scale:
    python main.py --config=configs/nclip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=gs://bucket/nclip_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, lambda args: {"nclip": common.nclip_options(args)})
