"""Cost of answer scoring: log-probs gathered at label positions before the LM head (hf_unlearn) versus the
straightforward full ``(B, T, V)`` logits + log-softmax, on the bundled model.

    .venv/bin/python benchmarks/scoring_cost.py    # writes benchmarks/results/scoring_cost.json

Each mode runs in a fresh subprocess, so the reported peak resident memory belongs to that mode alone. Both modes
score the same tokenised rows (the built-in forget + general-knowledge answers and their perturbed variants) with
the same batches, and the script checks that they agree.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "scoring_cost.json"
BATCH = 32


def _rows(tokenizer):
    from hf_unlearn import build_fictitious_authors
    from hf_unlearn.data import encode_qa

    bench = build_fictitious_authors(num_authors=20)
    rows = []
    for split in ("forget", "general_knowledge"):
        for r in bench[split]:
            for ans in (r["answer"], *r["perturbed_answer"]):
                rows.append(encode_qa(tokenizer, r["question"], ans).to_dict())
    return sorted(rows, key=lambda r: len(r["input_ids"]))


def child(mode: str) -> None:
    import torch

    from hf_unlearn import load_model
    from hf_unlearn.data import IGNORE_INDEX, DataCollatorForUnlearning
    from hf_unlearn.evaluation import label_logprobs

    model, tok = load_model("bundled")
    model.eval()
    rows = _rows(tok)
    collate = DataCollatorForUnlearning(pad_token_id=tok.pad_token_id)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sums = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(rows), BATCH):
            b = collate(rows[i : i + BATCH])
            if mode == "gather":
                logps, r = label_logprobs(model, b["input_ids"], b["attention_mask"], b["labels"])
                sums.append(torch.zeros(b["input_ids"].shape[0]).index_add_(0, r, logps))
            else:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                logp = logits[:, :-1].float().log_softmax(-1)
                t = b["labels"][:, 1:]
                picked = logp.gather(-1, t.clamp(min=0)[..., None]).squeeze(-1)
                sums.append((picked * (t != IGNORE_INDEX)).sum(1))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mode": mode,
                "sequences": len(rows),
                "seconds": round(seconds, 2),
                "peak_rss_mib": round(peak / 1024, 1),
                "peak_rss_above_loaded_model_mib": round((peak - base_rss) / 1024, 1),
                "sum_logprob": torch.cat(sums).tolist(),
            }
        )
    )


def main() -> None:
    from _machine import machine_info

    results = {}
    for mode in ("gather", "full"):
        out = subprocess.run([sys.executable, __file__, mode], check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    a, b = results["gather"].pop("sum_logprob"), results["full"].pop("sum_logprob")
    max_diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    summary = {
        "batch_size": BATCH,
        "max_abs_diff_sum_logprob": max_diff,
        "speedup": round(results["full"]["seconds"] / results["gather"]["seconds"], 2),
        **results,
        "machine": machine_info(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    for mode in ("gather", "full"):
        r = results[mode]
        print(
            f"{mode:>6}: {r['seconds']:6.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"(+{r['peak_rss_above_loaded_model_mib']:.0f} MiB over the loaded model)"
        )
    print(f"speedup {summary['speedup']}x, max |diff| of summed log-probs {max_diff:.2e}")


if __name__ == "__main__":
    child(sys.argv[1]) if len(sys.argv) > 1 else main()
