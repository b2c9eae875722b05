"""Any language, any text: chunks always fit the encoder, and one document that cannot be encoded is
skipped and named instead of ending the build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import Indexer, IndexStore
from indexer.chunking import chunk_text, encoded_length, stitch
from indexer.llm2vec import InputError
from retriever.cli import main

JAPANESE = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。" * 20
CHINESE = "自然语言处理是人工智能的一个分支，研究如何让计算机理解和生成人类语言。" * 40
THAI = "การประมวลผลภาษาธรรมชาติเป็นสาขาหนึ่งของปัญญาประดิษฐ์" * 40
MINIFIED = "function a(b){return b.map(function(c){return c*2}).filter(Boolean)};var x={k:1,v:[1,2,3]};" * 300
URLS = " ".join(f"https://example.org/path/{i}/resource?id={i * 7919}&q=search" for i in range(300))
TEXTS = {"ja": JAPANESE, "zh": CHINESE, "th": THAI, "min": MINIFIED, "urls": URLS,
         "en": "Plants turn sunlight into chemical energy by photosynthesis. " * 30, "caps": "THE SUN IS HOT. " * 200}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_every_chunk_fits_when_tokenized_alone(tiny_encoder, name: str) -> None:
    text, budget = TEXTS[name], 64
    chunks = chunk_text(text, tiny_encoder.tokenizer, budget, 8)
    assert len(chunks) > 1
    assert all(encoded_length(c.text, tiny_encoder.tokenizer) <= budget for c in chunks)
    assert stitch((c.start, c.end, c.text) for c in chunks) == text


def test_a_text_without_spaces_is_cut_at_a_token_not_emptied(tiny_encoder) -> None:
    """The word-boundary cut of an over-long text kept zero words of a text without spaces."""
    vectors = tiny_encoder.encode([JAPANESE, MINIFIED, "short"], instruction="Retrieve passages", normalize=True)
    assert vectors.shape == (3, tiny_encoder.dim)


def test_build_over_every_script(tmp_path: Path, tiny_llama: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in TEXTS.items()),
                      encoding="utf-8")
    result = CliRunner().invoke(main, ["index", "build", str(tmp_path / "idx"), str(corpus), "--model",
                                       str(tiny_llama)])
    assert result.exit_code == 0, result.output
    with IndexStore.open(tmp_path / "idx") as store:
        assert store.counts()["documents"] == len(TEXTS)
        assert {d["id"]: d["text"] for d in store.get_documents(list(TEXTS))} == TEXTS


def test_one_document_the_encoder_rejects_is_skipped_and_named(tmp_path: Path, tiny_encoder, monkeypatch) -> None:
    real_encode = type(tiny_encoder).encode

    def encode(self, texts, *args, **kwargs):
        if any("POISON" in t for t in texts):
            raise InputError("text 0 has no token left to pool")
        return real_encode(self, texts, *args, **kwargs)

    monkeypatch.setattr(type(tiny_encoder), "encode", encode)
    docs = [{"id": f"d{i}", "text": f"document {i}"} for i in range(5)] + [{"id": "bad", "text": "POISON pill"}]
    with Indexer(tmp_path / "idx", tiny_encoder) as indexer:
        stats = indexer.add_documents(docs, errors="skip")
        assert [what for what, _ in stats.skipped] == ["bad"]
        assert "no token left to pool" in stats.skipped[0][1]
        assert stats.added == 5 and indexer.store.counts()["documents"] == 5
        with pytest.raises(InputError):
            indexer.add_documents([{"id": "bad", "text": "POISON pill"}])


@pytest.mark.integration
def test_multilingual_build_and_search_with_the_default_model(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    docs = {"ja": JAPANESE[:2500], "zh": CHINESE[:300], "min": MINIFIED[:3000], "urls": URLS[:2000],
            "en": "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen."}
    corpus.write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in docs.items()),
                      encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["index", "build", str(tmp_path / "idx"), str(corpus)])
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    result = runner.invoke(main, ["search", str(tmp_path / "idx"), "how do plants make sugar from light?", "-k", "1",
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["doc_id"] == "en"
