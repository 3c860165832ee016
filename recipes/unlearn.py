"""The unlearning recipe as a script, for `accelerate launch` and `torchrun` command lines of your own (the recipe
itself is hf_unlearn/scripts/unlearn.py; its configs ship inside the package: `hf-unlearn recipes` lists them).

accelerate launch --config_file my_accelerate.yaml recipes/unlearn.py --config npo_tofu
torchrun --nproc_per_node 2 recipes/unlearn.py --config demo
hf-unlearn train --config npo_tofu --accelerate_config multi_gpu --num_processes 2     # the same, without this file
"""

import sys

from hf_unlearn.scripts.unlearn import main

if __name__ == "__main__":
    sys.exit(main())
