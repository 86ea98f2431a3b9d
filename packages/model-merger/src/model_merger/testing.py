"""Write real sharded checkpoints for tests and benchmarks, the way training jobs write them.

A merger is only as good as the checkpoints it is tried on, and hand-made "shards" miss what
FSDP really stores (DTensors with their mesh and placements, tied parameters, DCP metadata).
``write_checkpoints`` therefore launches ``world_size`` processes in a gloo group, each building
the same model (same seed, or the same pretrained weights), shards it with FSDP2
``fully_shard`` per decoder layer plus the root, and saves it:

- ``fsdp/``: ``model_world_size_{W}_rank_{r}.pt`` files of ``model.state_dict()`` (DTensors
  sharded on dim 0) with ``huggingface/`` beside them, as verl writes them;
- ``dcp/``: ``torch.distributed.checkpoint.save`` of the same state dict, plus ``huggingface/``;
- ``reference/`` (optional): the unsharded model, ``save_pretrained`` by rank 0 before sharding.

Each rank runs ``python -m model_merger.testing``; the parent only sets up the environment and
reports a failing rank with its log. CPU only (gloo), so it runs anywhere the tests do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

__all__ = ["LAYOUTS", "free_port", "tiny_llama_config", "write_checkpoints"]

LAYOUTS = ("fsdp", "dcp")
# Weight files; the rest of a pretrained dir (tokenizer, generation config) goes into every
# huggingface/ folder, as verl saves them beside the config.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json")


def tiny_llama_config(**overrides: Any) -> PretrainedConfig:
    """A Llama small enough for unit tests (GQA, 2 layers, 128 tokens); ``overrides`` win."""
    from transformers import LlamaConfig

    settings: dict[str, Any] = dict(hidden_size=64,
                                    intermediate_size=128,
                                    num_hidden_layers=2,
                                    num_attention_heads=4,
                                    num_key_value_heads=2,
                                    vocab_size=128,
                                    max_position_embeddings=64)
    return LlamaConfig(**(settings | overrides))


def free_port() -> int:
    """A loopback port nothing listens on right now (the gloo rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_checkpoints(out: Path,
                      model: PretrainedConfig | Path,
                      *,
                      world_size: int = 2,
                      dtype: torch.dtype = torch.float32,
                      layouts: Sequence[str] = LAYOUTS,
                      reference: bool = True,
                      sharded_init: bool = False,
                      seed: int = 0,
                      timeout_s: float = 900) -> Path:
    """Write ``out/fsdp``, ``out/dcp`` (those in ``layouts``), ``out/reference``; return ``out``.

    ``model`` is a config (randomly initialised with ``seed``) or a local pretrained model
    directory (loaded with ``from_pretrained``; its tokenizer and generation config files are
    copied into each ``huggingface/`` folder). Raises ``RuntimeError`` with the log of the
    first rank that fails (the others are stopped), ``TimeoutError`` after ``timeout_s``.

    ``sharded_init`` (configs only, no reference): build on the ``meta`` device, shard, and fill
    only each rank's own shards with random values, so a rank holds 1/W of the model, as large
    jobs do; the benchmark uses it for models bigger than one process could hold twice.
    """
    if sharded_init and (reference or not isinstance(model, PretrainedConfig)):
        raise ValueError("sharded_init builds from a config and writes no reference")
    unknown = set(layouts) - set(LAYOUTS)
    if unknown or not layouts:
        raise ValueError(f"layouts must be some of {LAYOUTS}, got {list(layouts)}")
    if not isinstance(model, PretrainedConfig) and not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model / 'config.json'}: not a pretrained model directory")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="model-merger-ckpt-") as tmp:
        args = [str(out), "--dtype", str(dtype).removeprefix("torch."), "--seed", str(seed)]
        args += ["--layouts", ",".join(layouts)] + (["--reference"] if reference else [])
        args += ["--sharded-init"] if sharded_init else []
        if isinstance(model, PretrainedConfig):
            model.save_pretrained(tmp)  # the ranks rebuild it from config.json
            args += ["--config", tmp]
        else:
            args += ["--pretrained", str(model)]
        _run_ranks(args, world_size, Path(tmp), timeout_s)
    return out


def _run_ranks(args: list[str], world_size: int, logs: Path, timeout_s: float) -> None:
    """Run one ``python -m model_merger.testing`` per rank; stop them all if one fails."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world_size),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(world_size):
            with open(logs / f"rank{rank}.log", "wb") as log:  # the child keeps its own fd
                procs.append(
                    subprocess.Popen([sys.executable, "-m", "model_merger.testing", *args],
                                     env={
                                         **env, "RANK": str(rank)
                                     },
                                     stdout=log,
                                     stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in procs):
            failed = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed:
                raise RuntimeError(_failure(failed[0], procs, logs))
            if time.monotonic() > deadline:
                raise TimeoutError(f"checkpoint ranks still running after {timeout_s:g} s\n" +
                                   _log(logs, 0))
            time.sleep(0.05)
        failed = [r for r, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise RuntimeError(_failure(failed[0], procs, logs))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _log(logs: Path, rank: int) -> str:
    return f"--- rank {rank} log ---\n" + (logs / f"rank{rank}.log").read_text(errors="replace")


def _failure(rank: int, procs: Sequence[subprocess.Popen[bytes]], logs: Path) -> str:
    return (f"writing the checkpoint failed: rank {rank} of {len(procs)} exited with status "
            f"{procs[rank].returncode}\n{_log(logs, rank)}")


def _copy_side_files(source: Path | None, dst: Path) -> None:
    """Tokenizer, generation config and the like from a pretrained dir (not weights/config)."""
    if source is None:
        return
    for file in source.iterdir():
        weights = file.name.endswith(_WEIGHT_SUFFIXES)
        if file.is_file() and not weights and file.name != "config.json":
            shutil.copy2(file, dst / file.name)


def _rank_main(argv: Sequence[str] | None = None) -> None:
    """One rank: build the model, optionally save the reference, shard it and save it."""
    parser = argparse.ArgumentParser(description="one rank of write_checkpoints (internal)")
    parser.add_argument("out", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="directory with config.json: random init")
    source.add_argument("--pretrained", type=Path, help="model directory: from_pretrained")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--sharded-init", action="store_true")
    args = parser.parse_args(argv)

    # Imported here: the parent process needs none of this.
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, args.dtype)
    out: Path = args.out
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(args.seed)
    if args.pretrained is not None:
        model = AutoModelForCausalLM.from_pretrained(args.pretrained, dtype=dtype)
    elif args.sharded_init:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.config),
                                                     dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.config)).to(dtype)
    if rank == 0 and args.reference:
        model.save_pretrained(out / "reference")
        _copy_side_files(args.pretrained, out / "reference")
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    if args.sharded_init:
        model.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(args.seed * 1000 + rank)
        with torch.no_grad():
            for param in model.parameters():
                assert isinstance(param, DTensor)  # fully_shard made every parameter one
                param.to_local().normal_(0.0, 0.02, generator=generator)
    state = model.state_dict()
    layouts = args.layouts.split(",")
    if "fsdp" in layouts:
        (out / "fsdp").mkdir(parents=True, exist_ok=True)
        torch.save(state, out / "fsdp" / f"model_world_size_{world}_rank_{rank}.pt")
    if "dcp" in layouts:
        dcp.save(state, checkpoint_id=out / "dcp")
    if rank == 0:
        for layout in layouts:
            model.config.save_pretrained(out / layout / "huggingface")
            _copy_side_files(args.pretrained, out / layout / "huggingface")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _rank_main()
    os._exit(0)  # skip interpreter teardown: gloo's threads can make it hang or crash
