"""CLIP-Lite: Jensen-Shannon mutual-information bound with one negative per positive and a
learned critic (Shrivastava et al., AISTATS 2023).

Zero-shot and retrieval use the critic's blocks. Switches:
--config.objectives.cliplite.negatives=roll|shuffle, --config.objectives.cliplite.prior_weight=0.1
(image and text prior discriminators, as the released config; text_prior=False for the image one).

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/cliplite.py --workdir=/tmp/cliplite

At scale:
    python main.py --config=configs/cliplite.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/cliplite_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, lambda args: {"cliplite": common.cliplite_options(args)})
