"""``model-merger merge`` on multi-GiB FSDP checkpoints beside a plain copy of the same bytes.

A merge reads every rank file once and writes the model once, so the floor is copying the
rank files: the anchor is ``cp`` of them, timed in the same run on the same (warm) page cache.
Goals (issue 6): merge wall time at most 1.5x the copy, and the merge process's peak RSS at
most the largest tensor plus 1 GiB (it must stream, not hold the model). The figures include
the CLI's start-up (importing torch), timed on its own as ``merge --help``; the ratio without
it is printed for reference ("w/o start-up"). Install with bytecode compiled (``make setup``
does): compiling torch's sources on every start would add seconds to each merge.

The checkpoints are real: 2 gloo ranks shard an fp32 Llama (hidden 1024, intermediate 4096,
vocab 32000, untied) with FSDP2, each filling only its own shards with random values (built
on the meta device, so a rank holds half the model), and save verl's per-rank files, and
with ``--layouts fsdp,dcp`` also a torch.distributed.checkpoint directory; the
number of layers is the fewest that give each requested size. Building them is timed too,
but is not part of the goals. Copy and merge then run ``--repeat`` times, alternated so both
see the same background load; the table has the median times and the largest peak RSS.
Run: ``python benchmarks/model_merge.py [--sizes 1,2] [--repeat 3] [--layouts fsdp,dcp]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from model_merger.testing import write_checkpoints
from trainyard_core.table import print_table

GIB = 2**30
MIB = 2**20
TIME_GOAL = 1.5  # merge s / copy s
RSS_SLACK = GIB  # peak RSS goal: the largest tensor plus this


def llama_config(layers: int) -> LlamaConfig:
    return LlamaConfig(hidden_size=1024,
                       intermediate_size=4096,
                       num_hidden_layers=layers,
                       num_attention_heads=16,
                       num_key_value_heads=16,
                       vocab_size=32000,
                       max_position_embeddings=2048,
                       tie_word_embeddings=False)


def weight_bytes(config: LlamaConfig) -> tuple[int, int]:
    """Total and largest tensor bytes of the fp32 state dict (built on the meta device)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    sizes = [t.numel() * 4 for t in model.state_dict().values()]
    return sum(sizes), max(sizes)


def layers_for(size: int) -> int:
    """The fewest decoder layers that make the weights at least ``size`` bytes."""
    one, two = weight_bytes(llama_config(1))[0], weight_bytes(llama_config(2))[0]
    per_layer = two - one
    return max(1, math.ceil((size - (one - per_layer)) / per_layer))


@dataclasses.dataclass
class Run:
    """One timed child process."""

    seconds: float
    peak_rss: int  # bytes, the child's ru_maxrss


def timed(cmd: Sequence[str], log: Path) -> Run:
    """Run ``cmd`` to completion; its wall time and peak RSS (from ``wait4``)."""
    os.sync()  # earlier writes must not be flushed on this run's time
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with status {proc.returncode}:\n"
                           f"{log.read_text(errors='replace')[-4000:]}")
    return Run(seconds, usage.ru_maxrss * 1024)


def measure(size_gib: float, work: Path, startup_s: float, repeat: int,
            layouts: Sequence[str]) -> list[dict[str, object]]:
    """Build one checkpoint, copy it and merge it ``repeat`` times (medians); a row a layout."""
    layers = layers_for(int(size_gib * GIB))
    total, largest = weight_bytes(llama_config(layers))
    start = time.perf_counter()
    ckpt = write_checkpoints(work / "checkpoint",
                             llama_config(layers),
                             layouts=tuple(layouts),
                             reference=False,
                             sharded_init=True)
    build_s = time.perf_counter() - start
    rows = []
    for layout in layouts:
        files = sorted(ckpt / layout / name
                       for name in os.listdir(ckpt / layout)
                       if name.endswith((".pt", ".distcp")))
        rows.append(
            _compare(work, ckpt / layout, files, repeat) | {
                "model": f"{size_gib:g} GiB",
                "layout": layout,
                "layers": layers,
                "weights MiB": total / MIB,
                "largest MiB": largest / MIB,
                "build s": build_s,
            })
    rss_goal = largest + RSS_SLACK
    for row in rows:
        copy_s, merge_s, peak = row.pop("copy"), row.pop("merge"), row.pop("peak")
        assert isinstance(copy_s, float) and isinstance(merge_s, float)
        assert isinstance(peak, int)
        ratio = merge_s / copy_s
        row.update({
            "copy s": copy_s,
            "merge s": merge_s,
            "merge/copy": ratio,
            "time goal": f"<= {TIME_GOAL:g}",
            "w/o start-up": (merge_s - startup_s) / copy_s,
            "peak RSS MiB": peak / MIB,
            "RSS goal MiB": rss_goal / MIB,
            "pass": "yes" if ratio <= TIME_GOAL and peak <= rss_goal else "no",
        })
    return rows


def _compare(work: Path, local_dir: Path, files: Sequence[Path], repeat: int) -> dict[str, object]:
    """Median copy and merge seconds of one checkpoint directory, and the merge's peak RSS."""
    copies, merges = [], []
    for _ in range(repeat):  # alternated, so both see the same background load
        (work / "copy").mkdir()
        copies.append(timed(["cp", *map(str, files), str(work / "copy")], work / "copy.log"))
        shutil.rmtree(work / "copy")
        merges.append(
            timed([
                sys.executable, "-m", "model_merger.cli", "merge", "--local-dir",
                str(local_dir), "--target-dir",
                str(work / "merged")
            ], work / "merge.log"))
        shutil.rmtree(work / "merged")
    return {
        "copy": statistics.median(r.seconds for r in copies),
        "merge": statistics.median(r.seconds for r in merges),
        "peak": max(r.peak_rss for r in merges),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,2", help="model sizes in GiB, comma separated")
    parser.add_argument("--workdir", type=Path, help="where checkpoints go (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="copies and merges per size")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints afterwards")
    parser.add_argument("--layouts",
                        default="fsdp",
                        help="checkpoint layouts to merge, comma separated: fsdp (verl's rank "
                        "files), dcp (torch.distributed.checkpoint)")
    args = parser.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")]

    print(f"{os.cpu_count()} cores; load average at start: {os.getloadavg()[0]:.2f}")
    root = Path(tempfile.mkdtemp(prefix="model-merge-bench-", dir=args.workdir))
    try:
        # The CLI's start-up alone (imports), part of every merge figure.
        startup = timed([sys.executable, "-m", "model_merger.cli", "merge", "--help"],
                        root / "startup.log")
        rows = []
        for size in sizes:
            work = root / f"{size:g}gib"
            work.mkdir()
            rows += measure(size, work, startup.seconds, args.repeat, args.layouts.split(","))
            if not args.keep:
                shutil.rmtree(work)
    finally:
        if args.keep:
            print(f"checkpoints kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(
        f"model-merger merge of 2-rank FSDP2 fp32 checkpoints vs cp of the same files "
        f"(CLI start-up alone: {startup.seconds:.1f} s, {startup.peak_rss / MIB:.0f} MiB)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
