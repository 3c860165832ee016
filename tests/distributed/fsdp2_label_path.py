"""Run by tests/distributed/test_two_ranks.py under torchrun: the trainers' label-position forward and an NPO step
on a model sharded with FSDP2 (``fully_shard``) over 2 CPU ranks (gloo), against one process on the same global
batch. accelerate does not shard on CPU ranks, so this drives torch's FSDP2 directly."""

import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM

from hf_unlearn.logprobs import install_label_logprob_forward
from hf_unlearn.trainers.losses import npo_loss


def label_logps(model, ids, mask, labels):
    out = model(input_ids=ids, attention_mask=mask, labels=labels, label_logprobs=True)
    return out.token_logps.sum(-1)


def npo_step(model, batch, ref, rows, lr=0.5, world=1):
    logps = label_logps(model, *(t[rows] for t in batch))
    # window-normalised like the trainers: each rank's share of the mean over the whole batch of 4 rows, times the
    # world size because FSDP2 averages the ranks' gradients
    loss = npo_loss(logps, ref[rows], beta=0.1).sum() / 4
    (loss * world).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return loss.detach()


def main(model_dir: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (4, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = ids.clone()
    labels[:, :4] = -100
    labels[mask == 0] = -100
    batch = (ids, mask, labels)
    single = AutoModelForCausalLM.from_pretrained(model_dir)
    initial = {n: p.detach().clone() for n, p in single.named_parameters()}
    install_label_logprob_forward(single)
    with torch.no_grad():
        ref = label_logps(single, *batch)  # the precomputed reference of the trainers
    single_loss = npo_step(single, batch, ref, slice(0, 4)) if rank == 0 else None

    sharded = AutoModelForCausalLM.from_pretrained(model_dir)
    install_label_logprob_forward(sharded)
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    mine = slice(rank * 4 // world, (rank + 1) * 4 // world)
    loss = npo_step(sharded, batch, ref, mine, world=world)
    dist.all_reduce(loss)  # the window's loss: the sum of the ranks' shares
    full = {n: p.full_tensor() for n, p in sharded.named_parameters()}
    if rank == 0:
        diff = max((full[n] - p).abs().max().item() for n, p in single.named_parameters())
        moved = max((full[n] - p).abs().max().item() for n, p in initial.items())
        result = {
            "max_weight_diff": diff,
            "moved": moved,
            "loss": loss.item(),
            "single_loss": single_loss.item(),
            "parameter_types": sorted({type(p).__name__ for p in sharded.parameters()}),
        }
        with open(out, "w") as fh:
            json.dump(result, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
