"""`l2v export` / `save_sentence_transformers`: the real sentence-transformers package loads the
exported folder and gives the encoder's vectors; what it cannot express is refused cleanly."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from indexer.llm2vec import CONFIG_NAME, LLM2VecEncoder
from indexer.llm2vec.sources import PRETRAINED
from indexer.llm2vec.st_export import EXPORTABLE_MODEL_TYPES, ExportError, default_prompts, st_prompt_length
from indexer.llm2vec.tokenization import collate
from retriever.cli import main
from retriever.instructions import DEFAULT_TASK, TASKS

st = pytest.importorskip("sentence_transformers")

DOCS = ["The quick brown fox jumps over the lazy dog.",
        "Retrieval augmented generation needs a good text encoder.",
        "Héllo wörld — ünïcode façade, naïve café, 東京, Москва.",
        "def encode(texts): return model(texts)  # some code",
        "short"]
# First words that the tiny tokenizer merges with the separating space, as real vocabularies do
# for ordinary words (see test_space_token_the_vocabulary_does_not_merge for the other case).
QUERIES = ["the lazy dog", "a question about claims", "retrieve passages that answer", "東京は日本の首都です。"]
TASK_PROMPTS = ["scientific_claim", "web_search"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def load_st(folder):
    return st.SentenceTransformer(str(folder), device="cpu")


def pooled_with(encoder, texts, instruction, extra_positions):
    """The encoder's vectors when it also pools `extra_positions(item)` (indices into the row)."""
    items = encoder.tokenize(texts, [instruction] * len(texts))
    items = [replace(item, pool_mask=[m or i in extra_positions(item) for i, m in enumerate(item.pool_mask)])
             for item in items]
    with torch.inference_mode():
        return encoder.embed(collate(items, encoder.pad_token_id)).numpy()


@pytest.fixture(scope="module")
def nobos_dir(tiny_model_factory):
    return tiny_model_factory("llama", adds_bos=False)


@pytest.fixture(scope="module", params=["mean", "last_token"])
def exported(request, nobos_dir, tmp_path_factory):
    """(encoder, sentence-transformers model) of a tiny Llama whose tokenizer adds no BOS."""
    encoder = LLM2VecEncoder.from_pretrained(nobos_dir, pooling=request.param)
    folder = encoder.save_sentence_transformers(tmp_path_factory.mktemp("st") / "out", normalize=False)
    return encoder, load_st(folder), folder


def test_documents_and_queries_give_our_vectors(exported):
    encoder, model, _ = exported
    ours, theirs = encoder.encode(DOCS), model.encode_document(DOCS)
    assert cosines(ours, theirs).min() >= 0.9999
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)  # no Normalize module: the raw vectors
    assert cosines(encoder.encode(DOCS), model.encode(DOCS)).min() >= 0.9999  # no default prompt
    generic = TASKS[DEFAULT_TASK].instruction
    assert cosines(encoder.encode(QUERIES, instruction=generic), model.encode_query(QUERIES)).min() >= 0.9999
    for task in TASK_PROMPTS:
        ours = encoder.encode(QUERIES, instruction=TASKS[task].instruction)
        assert cosines(ours, model.encode(QUERIES, prompt_name=task)).min() >= 0.9999, task
    # a prompt matters: without it the query vectors change
    assert cosines(encoder.encode(QUERIES, instruction=generic), model.encode(QUERIES)).min() < 0.999


def test_our_loader_reads_the_folder_back(exported):
    encoder, _, folder = exported
    again = LLM2VecEncoder.from_pretrained(folder)
    assert again.config == encoder.config
    assert again.bidirectional
    assert cosines(encoder.encode(DOCS), again.encode(DOCS)).min() >= 0.9999
    instruction = TASKS["scientific_claim"].instruction
    assert cosines(encoder.encode(QUERIES, instruction=instruction),
                   again.encode(QUERIES, instruction=instruction)).min() >= 0.9999


def test_texts_ending_in_a_space_keep_their_space_token(exported):
    """The exported tokenizer changes a prompt only when it is the whole input: a text that ends
    with a space (a query typed with one) is tokenized as the encoder does, space included."""
    encoder, model, folder = exported
    texts = ["the lazy dog ", "a question about claims "]
    assert cosines(encoder.encode(texts), encoder.encode([t.strip() for t in texts])).min() < 0.9999
    assert cosines(encoder.encode(texts), model.encode_document(texts)).min() >= 0.9999
    generic = TASKS[DEFAULT_TASK].instruction
    assert cosines(encoder.encode(texts, instruction=generic), model.encode_query(texts)).min() >= 0.9999
    again = LLM2VecEncoder.from_pretrained(folder)
    assert cosines(encoder.encode(texts), again.encode(texts)).min() >= 0.9999
    prompt = generic + " "
    assert st_prompt_length(model.tokenizer, prompt) == len(encoder.tokenizer(generic)["input_ids"])


def test_folder_layout(tiny_encoder, tmp_path):
    folder = tiny_encoder.save_sentence_transformers(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    config = json.loads((folder / "config.json").read_text())
    assert config["is_causal"] is False and config["model_type"] == "llama"
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and pooling["include_prompt"] is False
    assert sum(v is True for k, v in pooling.items() if k.startswith("pooling_mode_")) == 1
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert st_config["default_prompt_name"] is None  # documents get no prompt
    assert st_config["prompts"]["query"] == TASKS[DEFAULT_TASK].instruction + " "
    assert set(st_config["prompts"]) == {"query", *TASKS}
    assert st_config["prompts"]["symmetric"] == ""
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer["padding_side"] == "left"
    assert json.loads((folder / CONFIG_NAME).read_text())["pooling_mode"] == "mean"
    card = (folder / "README.md").read_text()
    assert tiny_encoder.fingerprint() in card and "scientific_claim" in card
    assert "BOS" in card  # this tokenizer adds one: the card says what differs
    assert list(folder.glob("*.safetensors"))


def test_bos_is_pooled_in_documents_only(tiny_encoder, tmp_path):
    """A tokenizer that adds a BOS: sentence-transformers averages it into documents (no prompt to
    mask it), which is the only difference; queries mask it with the prompt and match."""
    with pytest.warns(RuntimeWarning, match="BOS"):
        folder = tiny_encoder.save_sentence_transformers(tmp_path / "out", normalize=False)
    model = load_st(folder)
    theirs = model.encode_document(DOCS)
    assert cosines(tiny_encoder.encode(DOCS), theirs).min() < 0.9999
    with_bos = pooled_with(tiny_encoder, DOCS, None, lambda item: {0})
    assert cosines(with_bos, theirs).min() >= 0.9999
    instruction = TASKS["scientific_claim"].instruction
    assert cosines(tiny_encoder.encode(QUERIES, instruction=instruction),
                   model.encode(QUERIES, prompt_name="scientific_claim")).min() >= 0.9999


def test_space_token_the_vocabulary_does_not_merge(exported):
    """When the tokenizer keeps the separating space as a token of its own (here "what"; digits in
    SmolLM2 and Gemma 3), sentence-transformers pools it too: the documented remaining difference."""
    encoder, model, folder = exported
    if encoder.config.pooling_mode != "mean":
        pytest.skip("last_token pools the last position only")
    queries = ["what is a fox?"]
    instruction = TASKS[DEFAULT_TASK].instruction
    prompt_length = st_prompt_length(model.tokenizer, instruction + " ")
    theirs = model.encode_query(queries)
    assert cosines(encoder.encode(queries, instruction=instruction), theirs).min() < 0.9999
    with_space = pooled_with(encoder, queries, instruction, lambda item: {prompt_length})
    assert cosines(with_space, theirs).min() >= 0.9999


@pytest.mark.parametrize("arch", [a for a in EXPORTABLE_MODEL_TYPES if a != "llama"])
def test_every_exportable_architecture(arch, tiny_model_factory, tmp_path):
    model_dir = tiny_model_factory(arch, adds_bos=False)
    pooling = "mean"
    if arch == "qwen2":
        # transformers 5 loads Qwen2's own tokenizer class whatever tokenizer_config.json says,
        # which rebuilds the normalizer that makes the prompt length exact: mean pooling is refused
        with pytest.raises(ExportError, match="text starts at token"):
            LLM2VecEncoder.from_pretrained(model_dir).save_sentence_transformers(tmp_path / "mean")
        assert list(tmp_path.iterdir()) == []
        pooling = "last_token"
    encoder = LLM2VecEncoder.from_pretrained(model_dir, pooling=pooling)
    folder = encoder.save_sentence_transformers(tmp_path / arch)
    config = json.loads((folder / "config.json").read_text())
    assert config["is_causal"] is False
    if "gemma" in arch:  # Gemma's own switch, with Gemma 3's sliding window kept through a reload
        assert config["use_bidirectional_attention"] is True
    model = load_st(folder)
    long_doc = [" ".join(DOCS * 3)]  # longer than the tiny Gemmas' sliding window
    assert cosines(encoder.encode(DOCS + long_doc), model.encode_document(DOCS + long_doc)).min() >= 0.9999
    instruction = TASKS["web_search"].instruction
    assert cosines(encoder.encode(QUERIES, instruction=instruction),
                   model.encode(QUERIES, prompt_name="web_search")).min() >= 0.9999


def test_causal_encoder_exports_causal_attention(nobos_dir, tmp_path):
    encoder = LLM2VecEncoder.from_pretrained(nobos_dir, bidirectional=False)
    folder = encoder.save_sentence_transformers(tmp_path / "out")
    assert json.loads((folder / "config.json").read_text())["is_causal"] is True
    model = load_st(folder)
    assert cosines(encoder.encode(DOCS), model.encode_document(DOCS)).min() >= 0.9999
    assert not LLM2VecEncoder.from_pretrained(folder, bidirectional=False).bidirectional


def test_unmerged_adapter_is_merged_into_a_copy(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(3)
    lora = get_peft_model(AutoModel.from_pretrained(tiny_llama),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, [tmp_path / "adapter"], merge_adapters=False,
                                             pooling="last_token")
    before = encoder.encode(DOCS)
    folder = encoder.save_sentence_transformers(tmp_path / "out")
    assert hasattr(encoder.model, "merge_and_unload")  # the encoder keeps its unmerged adapter
    np.testing.assert_array_equal(encoder.encode(DOCS), before)
    assert cosines(before, load_st(folder).encode_document(DOCS)).min() >= 0.9999


@pytest.mark.parametrize("pooling", ["weighted_mean", "eos_token", "bos_token"])
def test_pooling_sentence_transformers_cannot_express_is_refused(tiny_llama, pooling, tmp_path):
    encoder = LLM2VecEncoder.from_pretrained(tiny_llama, pooling=pooling)
    with pytest.raises(ExportError, match=f"cannot export '{pooling}' pooling"):
        encoder.save_sentence_transformers(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_unverified_architecture_and_chat_template_are_refused(tiny_model_factory, tiny_encoder, tmp_path):
    phi3 = LLM2VecEncoder.from_pretrained(tiny_model_factory("phi3"), bidirectional=False)
    with pytest.raises(ExportError, match="model type 'phi3'"):
        phi3.save_sentence_transformers(tmp_path / "phi3")
    chat = LLM2VecEncoder(tiny_encoder.model, tiny_encoder.tokenizer, tiny_encoder.config,
                          chat_template=("[INST] ", " [/INST]"))
    with pytest.raises(ExportError, match="chat template"):
        chat.save_sentence_transformers(tmp_path / "chat")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_midway_leaves_nothing_behind(tiny_encoder, tmp_path, monkeypatch):
    import indexer.llm2vec.st_export as st_export

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(st_export, "_write_modules", broken)
    with pytest.raises(OSError, match="disk full"):
        tiny_encoder.save_sentence_transformers(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_target_needs_force(tiny_encoder, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty; pass --force"):
        tiny_encoder.save_sentence_transformers(target)
    assert (target / "notes.txt").read_text() == "keep me"
    tiny_encoder.save_sentence_transformers(target, force=True)
    assert not (target / "notes.txt").exists() and (target / "modules.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli(tiny_llama, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(tiny_llama), str(out), "--pooling", "last_token", "--no-normalize"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_lasttoken"] is True
    assert len(json.loads((out / "modules.json").read_text())) == 2
    again = runner.invoke(main, ["export", str(tiny_llama), str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    refused = runner.invoke(main, ["export", str(tiny_llama), str(tmp_path / "wm"), "--pooling", "weighted_mean"])
    assert refused.exit_code == 1 and "weighted_mean" in refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_all_caps_text_needs_lower_casing_for_sentence_transformers(exported):
    """LLM2VecEncoder lower-cases texts written entirely in capitals; sentence-transformers cannot,
    so such texts are lower-cased by the caller (the model card says so)."""
    encoder, model, _ = exported
    shouted = ["THE LAZY DOG JUMPS"]
    ours = encoder.encode(shouted)
    assert cosines(ours, model.encode_document(shouted)).min() < 0.999
    assert cosines(ours, model.encode_document([shouted[0].lower()])).min() >= 0.9999


def test_default_prompts_end_with_the_encoder_join():
    prompts = default_prompts()
    assert all(p == "" or (p.endswith(" ") and not p.endswith("  ")) for p in prompts.values())


@pytest.mark.integration
def test_default_model_export_loads_in_sentence_transformers(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "smollm2-135m", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    for stage in ("mntp", "supervised"):  # the shipped adapters' data hashes
        provenance = json.loads((PRETRAINED / "smollm2-135m" / stage / "train_provenance.json").read_text())
        assert provenance["data_sha256"] in card
    encoder = LLM2VecEncoder.from_pretrained("smollm2-135m")
    model = load_st(out)
    docs = DOCS + ["What is LoRA? Low-rank adaptation trains small matrices next to frozen weights."]
    assert cosines(encoder.encode(docs), model.encode_document(docs)).min() >= 0.9999
    queries = QUERIES + ["what is lora?", "what is lora? ", "Vitamin D prevents fractures"]
    generic = TASKS[DEFAULT_TASK].instruction
    assert cosines(encoder.encode(queries, instruction=generic), model.encode_query(queries)).min() >= 0.9999
    claim = TASKS["scientific_claim"].instruction
    assert cosines(encoder.encode(queries, instruction=claim),
                   model.encode(queries, prompt_name="scientific_claim")).min() >= 0.9999
    again = LLM2VecEncoder.from_pretrained(out)
    assert cosines(encoder.encode(docs), again.encode(docs)).min() >= 0.9999
