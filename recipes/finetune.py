"""Fine-tune target / retain models on the built-in benchmark (see hf_unlearn/scripts/finetune.py).

python recipes/finetune.py --split retain --num-authors 20 --output outputs/retain
"""

from hf_unlearn.scripts.finetune import main

if __name__ == "__main__":
    main()
