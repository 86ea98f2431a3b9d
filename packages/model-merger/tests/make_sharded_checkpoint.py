"""Write real sharded checkpoints of a tiny Llama, as one rank of a 2-process gloo group.

Run once per rank with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set; ``argv[1]`` is the
output directory. Rank 0 first saves the unsharded reference model to ``reference/`` (same seed
on every rank, so every rank starts from the same weights). Then the model is sharded with
FSDP2 ``fully_shard`` and saved twice: per-rank ``model_world_size_{W}_rank_{r}.pt`` files of
``model.state_dict()`` (DTensors sharded on dim 0) with ``huggingface/config.json``, as verl
writes them, in ``fsdp/``; and with ``torch.distributed.checkpoint.save`` in ``dcp/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_config() -> LlamaConfig:
    return LlamaConfig(hidden_size=64,
                       intermediate_size=128,
                       num_hidden_layers=2,
                       num_attention_heads=4,
                       num_key_value_heads=2,
                       vocab_size=128,
                       max_position_embeddings=64,
                       tie_word_embeddings=True)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config())
    if rank == 0:
        model.save_pretrained(out / "reference")
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    state = model.state_dict()
    (out / "fsdp").mkdir(parents=True, exist_ok=True)
    torch.save(state, out / "fsdp" / f"model_world_size_{world}_rank_{rank}.pt")
    if rank == 0:
        model.config.save_pretrained(out / "fsdp" / "huggingface")
    dcp.save(state, checkpoint_id=out / "dcp")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    os._exit(0)
