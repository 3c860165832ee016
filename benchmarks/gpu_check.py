"""The GPU checks, as one prepared script for the occasional CUDA machine (about 10 minutes on one GPU).

    python benchmarks/gpu_check.py                  # on a CUDA machine -> results/gpu_*.json with the device name
    python benchmarks/gpu_check.py --allow-cpu --quick    # the same steps on CPU, one method each (a smoke run)

1. the step-cost table in bf16 (supervised, NPO, SimNPO, RMU, UNDIAL, CE-U, PDU) on the bundled model
   -> ``results/gpu_cost.json``;
2. QLoRA (4-bit NF4 on CUDA): every output-level method trains an adapter, and NPO's LoRA gradients match a
   dequantised reference (the QLoRA tests, run on this device) -> recorded in ``results/gpu_check.json``;
3. evaluation throughput (scoring, greedy generation, MCQ) -> ``results/gpu_cost_eval.json``;
4. with 2 or more GPUs: the 2-rank runs of ``tests/distributed`` (torchrun, accelerate launch) and FSDP2 / ZeRO-3
   through accelerate (``benchmarks/gpu_tests``: sharded runs equal one process; ZeRO-3 where DeepSpeed is installed).

Every step runs in its own process with a time limit; a failing step is recorded with its output and the others
still run. The summary goes to ``results/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COST_METHODS = ["sft", "sft_forget", "npo", "simnpo", "rmu", "undial", "ceu", "pdu"]


def _step(name: str, cmd: list[str], limit: float, log: dict) -> bool:
    print(f"[gpu_check] {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, check=False)
        ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        ok, tail = False, f"timed out after {limit:.0f} s\n{(err.stdout or b'')[-2000:]!r}"
    log[name] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1), "output_tail": tail}
    print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED'} in {log[name]['seconds']} s", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true", help="run the steps without a GPU (smoke run)")
    parser.add_argument("--quick", action="store_true", help="one method per step")
    parser.add_argument("--prefix", default="gpu", help="result file prefix (default gpu)")
    a = parser.parse_args(argv)
    gpus = torch.cuda.device_count()
    if not gpus and not a.allow_cpu:
        print("No CUDA device: nothing to check (use --allow-cpu for a smoke run on CPU).", file=sys.stderr)
        return 2
    py = sys.executable
    methods = COST_METHODS[:2] if a.quick else COST_METHODS
    log: dict = {"machine": machine_info(), "gpus": gpus}
    _step("cost_bf16", [py, "benchmarks/cost.py", "--methods", *methods, "--output", f"{a.prefix}_cost.json"], 300, log)
    qlora = "qlora and (NPO or dequantised)" if a.quick else "qlora"
    _step("qlora", [py, "-m", "pytest", "-q", "tests/test_trainers_peft.py", "-k", qlora], 180, log)
    _step("eval_throughput", [py, "benchmarks/cost.py", "--eval", "--output", f"{a.prefix}_cost_eval.json"], 180, log)
    if gpus >= 2:
        _step("two_ranks", [py, "-m", "pytest", "-q", "tests/distributed"], 300, log)
        _step("sharded", [py, "-m", "pytest", "-q", "benchmarks/gpu_tests"], 300, log)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.prefix}_check.json").write_text(json.dumps(log, indent=2) + "\n")
    failed = [k for k, v in log.items() if isinstance(v, dict) and v.get("ok") is False]
    print(f"[gpu_check] done; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
