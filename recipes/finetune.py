"""Fine-tune target / retain models on the built-in benchmark (the command: `hf-unlearn finetune`).

python recipes/finetune.py --split retain --num_authors 20 --output_dir outputs/retain
"""

import sys

from hf_unlearn.scripts.finetune import main

if __name__ == "__main__":
    sys.exit(main())
