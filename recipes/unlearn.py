"""Unlearning recipe entry point (see hf_unlearn/scripts/unlearn.py).

accelerate launch --config_file recipes/accelerate/single_gpu.yaml recipes/unlearn.py --config recipes/configs/demo.yaml
torchrun --nproc_per_node 2 recipes/unlearn.py --config recipes/configs/demo.yaml
"""

from hf_unlearn.scripts.unlearn import main

if __name__ == "__main__":
    main()
