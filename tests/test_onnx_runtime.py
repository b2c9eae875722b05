"""The ONNX Runtime path (`runtime="onnx"`, and int8): the torch path's vectors, bidirectional
attention, pooling over the text tokens only, a cache that is rebuilt rather than trusted, and a
load from an index spec that imports neither torch nor transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from indexer.llm2vec import LLM2VecEncoder, sources
from indexer.llm2vec import precision as precision_module
from indexer.llm2vec.onnx_encoder import OnnxEncoder, entry_path
from indexer.llm2vec.rust_tokenizer import RustTokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Héllo wörld — ünïcode façade, 東京",
         "def encode(texts): return model(texts)", "A"]
INSTRUCTION = "Given a question, retrieve passages that answer the question"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "gemma3_text"])
def test_onnx_gives_the_torch_vectors_with_and_without_instructions(tiny_model_factory, arch):
    directory = tiny_model_factory(arch)
    torch_encoder = LLM2VecEncoder.from_pretrained(directory)
    onnx_encoder = LLM2VecEncoder.from_pretrained(directory, runtime="onnx")
    assert isinstance(onnx_encoder, OnnxEncoder) and onnx_encoder.runtime == "onnx"
    assert onnx_encoder.fingerprint() == torch_encoder.fingerprint()
    for instruction in (None, INSTRUCTION):
        expected = torch_encoder.encode(TEXTS, instruction)  # a mixed-length batch: left padding
        got = onnx_encoder.encode(TEXTS, instruction)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_attention_is_bidirectional_and_pools_only_the_text(tiny_llama, precision):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, runtime="onnx", precision=precision)
    causal = LLM2VecEncoder.from_pretrained(tiny_llama, runtime="onnx", precision=precision, bidirectional=False)
    assert encoder.bidirectional and not causal.bidirectional
    # Pooling covers the text only: the vector of "x y" with an instruction equals the mean of the
    # graph's per-token states over the text tokens, which we get by pooling one token at a time.
    [item] = encoder.tokenize(["alpha beta gamma delta"], ["Retrieve"])
    ids = np.array([item.input_ids], dtype=np.int64)
    mask = np.array([item.pool_mask])
    ones = np.ones_like(ids)

    def pooled(enc, pool_mask):
        return enc.session.run(None, {"input_ids": ids, "attention_mask": ones, "pool_mask": pool_mask})[0][0]

    per_token = [pooled(encoder, np.eye(ids.shape[1], dtype=bool)[[i]]) for i in range(ids.shape[1])]
    text_mean = np.mean([per_token[i] for i in np.flatnonzero(mask[0])], axis=0)
    np.testing.assert_allclose(encoder.encode("alpha beta gamma delta", "Retrieve"), text_mean, atol=1e-4, rtol=1e-3)
    assert not mask[0, 0] and mask[0].sum() < ids.shape[1]  # the instruction is not pooled...
    assert np.abs(encoder.encode("alpha beta gamma delta") - text_mean).max() > 1e-3  # ...but it is seen
    # Bidirectional: the first token's state changes with the last token; causal: it does not.
    changed = ids.copy()
    changed[0, -1] = (changed[0, -1] + 7) % 300 + 5
    first = np.eye(ids.shape[1], dtype=bool)[[0]]
    for enc, sees_later in ((encoder, True), (causal, False)):
        a = pooled(enc, first)
        b = enc.session.run(None, {"input_ids": changed, "attention_mask": ones, "pool_mask": first})[0][0]
        assert (np.abs(a - b).max() > 1e-4) == sees_later


def test_int8_is_close_to_fp32_and_has_its_own_fingerprint(tiny_llama):
    fp32 = LLM2VecEncoder.from_pretrained(tiny_llama)
    int8 = LLM2VecEncoder.from_pretrained(tiny_llama, precision="int8")
    assert int8.runtime == "onnx" and int8.precision == "int8" and int8.spec()["precision"] == "int8"
    assert int8.spec()["int8_recipe"] == precision_module.RECIPE_VERSION
    assert "precision" not in fp32.spec() and int8.fingerprint() != fp32.fingerprint()
    # a tiny random 32-wide model quantizes coarsely (random ~0); the 0.99 bar is checked on SmolLM2
    assert _cosines(int8.encode(TEXTS), fp32.encode(TEXTS)).min() > 0.9


def test_a_cut_short_cache_entry_is_rebuilt_not_loaded(tiny_llama):
    first = LLM2VecEncoder.from_pretrained(tiny_llama, runtime="onnx")
    expected = first.encode(TEXTS)
    weights = first.directory / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:100])
    assert OnnxEncoder.cached(first.spec() | {"fingerprint": first.fingerprint()}) is None
    assert not first.directory.exists()
    again = LLM2VecEncoder.from_pretrained(tiny_llama, runtime="onnx")
    np.testing.assert_allclose(again.encode(TEXTS), expected, atol=1e-6)


def test_a_spec_loads_the_cached_export_without_torch_or_transformers(tiny_llama, tmp_path):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, runtime="onnx")
    spec = {**encoder.spec(), "fingerprint": encoder.fingerprint()}
    assert entry_path(encoder.fingerprint()).is_dir()
    script = (
        "import json, sys\n"
        "from indexer.llm2vec.onnx_encoder import OnnxEncoder\n"
        f"encoder = OnnxEncoder.cached(json.loads({json.dumps(json.dumps(spec))}))\n"
        f"print(json.dumps(encoder.encode({TEXTS!r}).tolist()))\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    np.testing.assert_allclose(np.array(json.loads(out[0])), encoder.encode(TEXTS), atol=1e-6)
    assert json.loads(out[1]) == []


def test_the_rust_tokenizer_matches_the_transformers_one(tiny_encoder):
    rust = RustTokenizer.of(tiny_encoder.tokenizer)
    texts = TEXTS + ["  leading spaces", "word " * 300]
    for kwargs in ({"add_special_tokens": True}, {"add_special_tokens": False},
                   {"add_special_tokens": True, "truncation": True, "max_length": 17}):
        expected = tiny_encoder.tokenizer(texts, return_offsets_mapping=True, **kwargs)
        got = rust(texts, return_offsets_mapping=True, **kwargs)
        assert got["input_ids"] == [list(ids) for ids in expected["input_ids"]]
        assert got["offset_mapping"] == [[tuple(o) for o in offs] for offs in expected["offset_mapping"]]
    assert (rust.bos_token_id, rust.eos_token_id) == (tiny_encoder.tokenizer.bos_token_id,
                                                      tiny_encoder.tokenizer.eos_token_id)


def test_langchain_embeddings_take_the_fast_path(tiny_llama):
    from retriever.langchain import LLM2VecEmbeddings

    int8 = LLM2VecEmbeddings(model=str(tiny_llama), precision="int8")
    assert int8.encoder.runtime == "onnx" and int8.encoder.precision == "int8"
    fp32 = LLM2VecEmbeddings(model=str(tiny_llama), runtime="onnx")
    reference = LLM2VecEmbeddings(model=str(tiny_llama))
    np.testing.assert_allclose(fp32.embed_documents(TEXTS), reference.embed_documents(TEXTS), atol=1e-4)
    assert _cosines(np.array(int8.embed_query("what is a fox?")), np.array(reference.embed_query("what is a fox?"))) > 0.9


def test_cli_build_prepares_the_query_runtime_and_search_uses_it(tiny_llama, tmp_path):
    from click.testing import CliRunner

    from retriever.cli import main

    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(TEXTS)) + "\n")
    index = tmp_path / "index"
    result = CliRunner().invoke(main, ["index", "build", str(index), str(source), "-m", str(tiny_llama)])
    assert result.exit_code == 0, result.output
    spec = json.loads((index / "manifest.json").read_text())["encoder"]
    assert OnnxEncoder.cached(spec) is not None  # exported once by the build
    outputs = {}
    for runtime in ("auto", "torch"):
        result = CliRunner().invoke(main, ["search", str(index), "a quick fox", "--json", "--runtime", runtime])
        assert result.exit_code == 0, result.output
        outputs[runtime] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [h["doc_id"] for h in outputs["auto"]] == [h["doc_id"] for h in outputs["torch"]]
    np.testing.assert_allclose([h["score"] for h in outputs["auto"]], [h["score"] for h in outputs["torch"]], atol=1e-4)
