"""`l2v serve`: a real uvicorn server over tiny-model indexes, called with the openai client and httpx.

Vectors equal `LLM2VecEncoder.encode`, hits equal `Retriever.search_batch`, writes are committed
when answered, every bad input is a 4xx OpenAI-shaped error, concurrent clients leave exactly the
expected documents, and shutdown closes the indexes.
"""

from __future__ import annotations

import base64
import random
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import openai
import pytest
from click.testing import CliRunner

from indexer import Indexer, IndexLockedError, IndexStore, LLM2VecEncoder
from retriever import Retriever, get_task
from retriever.cli import main
from retriever.server import BatchingEncoder, ServerSettings, is_loopback
from serving import live_server

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = [{"id": f"doc-{i}", "text": f"Passage {i}: " + ["foxes run at night", "encoders embed text into vectors",
                                                          "claims need proof", "questions want answers"][i % 4],
         "metadata": {"lang": "en" if i % 2 else "fr", "year": 2018 + i}} for i in range(10)]
QUERIES = ["what do encoders do?", "night animals", "evidence for a claim"]
LIMITS = {"max_texts": 20, "max_chars": 2000, "max_body_bytes": 200_000}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Path]:
    """Two indexes of the same tiny model: `docs` (read only in these tests) and `scratch` (written)."""
    root = tmp_path_factory.mktemp("served")
    paths = {"docs": root / "docs", "scratch": root / "scratch"}
    for path in paths.values():
        with Indexer(path, model=str(tiny_llama)) as indexer:
            indexer.add_documents(DOCS)
    return paths


@pytest.fixture(scope="module")
def base(indexes: dict[str, Path]) -> Iterator[str]:
    settings = ServerSettings(indexes=tuple(indexes.values()), api_key=KEY, max_batch=8, max_wait_ms=5, **LIMITS)
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)


# ---------------------------------------------------------------------------------------------- embeddings
def test_models_shared_between_indexes(http: httpx.Client, tiny_encoder: LLM2VecEncoder) -> None:
    models = http.get("/v1/models").json()["data"]
    assert len(models) == 1, "both indexes use the same encoder: it is loaded once"
    assert models[0]["indexes"] == ["docs", "scratch"] and models[0]["dim"] == tiny_encoder.dim
    assert models[0]["fingerprint"] == tiny_encoder.fingerprint()
    assert "/" not in models[0]["id"], "model ids never show server paths"


@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_openai_client_embeddings(client: openai.OpenAI, tiny_encoder: LLM2VecEncoder,
                                  encoding_format: str | None) -> None:
    texts = ["foxes run at night", "Héllo wörld, 東京", "a much longer text about encoders " * 5]
    options = {"encoding_format": encoding_format} if encoding_format else {}  # the client's default is base64
    response = client.embeddings.create(model="docs", input=texts, **options)
    rows = [row.embedding for row in sorted(response.data, key=lambda r: r.index)]
    if encoding_format == "base64":  # asked for explicitly, the client hands the string over as sent
        rows = [np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows]
    got = np.array(rows)
    expected = tiny_encoder.encode(texts, normalize=True)
    assert got.shape == expected.shape
    assert cosines(got, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert response.usage.prompt_tokens > len(texts) and response.model == response.model.strip()


def test_embedding_extensions(client: openai.OpenAI, tiny_encoder: LLM2VecEncoder) -> None:
    texts = ["what do encoders do?", "why is the sky blue"]
    by_task = client.embeddings.create(model="docs", input=texts, encoding_format="float", extra_body={"task": "qa"})
    expected = tiny_encoder.encode(texts, instruction=get_task("qa").instruction, normalize=True)
    assert cosines([r.embedding for r in by_task.data], expected).min() >= 0.9999
    bare = tiny_encoder.encode(texts, normalize=True)
    assert cosines([r.embedding for r in by_task.data], bare).max() < 0.9999, "the instruction changes the vectors"
    own = client.embeddings.create(model="docs", input=texts[0], encoding_format="float",
                                   extra_body={"instruction": "Retrieve code", "normalize": False})
    raw = tiny_encoder.encode(texts[0], instruction="Retrieve code")
    assert np.allclose(own.data[0].embedding, raw, rtol=1e-4, atol=1e-5), "normalize=false gives the raw pooled vector"


def test_langchain_openai_embeddings(base: str, tiny_encoder: LLM2VecEncoder) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(base_url=f"{base}/v1", api_key=KEY, model="docs",
                                                   check_embedding_ctx_length=False, max_retries=0)
    texts = ["foxes run at night", "claims need proof"]
    assert cosines(embeddings.embed_documents(texts), tiny_encoder.encode(texts, normalize=True)).min() >= 0.9999
    assert cosines(embeddings.embed_query(texts[0]), tiny_encoder.encode(texts[0], normalize=True)) >= 0.9999


# ---------------------------------------------------------------------------------------------- search
@pytest.mark.parametrize("options", [
    {"k": 3},
    {"k": 4, "task": "qa", "filter": {"lang": "en"}},
    {"k": 2, "instruction": "", "filter": {"year": {"$gte": 2022}}, "score_threshold": -1.0},
    {"k": 3, "mmr": True, "fetch_k": 8, "lambda_mult": 0.3},
    {"k": 5, "hybrid": True},
    {"k": 5, "hybrid": False, "score_threshold": -1.0},
])
def test_search_equals_the_library(http: httpx.Client, indexes: dict[str, Path], options: dict[str, Any]) -> None:
    response = http.post("/v1/search", json={"index": "docs", "queries": QUERIES, **options})
    assert response.status_code == 200, response.text
    got = response.json()["results"]
    with Retriever.open(indexes["docs"]) as retriever:
        expected = retriever.search_batch(QUERIES, **options)
    assert [[(h["doc_id"], h["chunk_id"]) for h in row] for row in got] == \
           [[(h.doc_id, h.chunk_id) for h in row] for row in expected]
    for row, expected_row in zip(got, expected):
        for hit, want in zip(row, expected_row):
            assert hit["score"] == pytest.approx(want.score, abs=1e-5)
            assert {k: v for k, v in hit.items() if k != "score"} == \
                   {k: v for k, v in want.to_dict().items() if k != "score"}


def test_single_query_form(http: httpx.Client) -> None:
    one = http.post("/v1/search", json={"index": "docs", "query": QUERIES[0], "k": 2}).json()["results"]
    many = http.post("/v1/search", json={"index": "docs", "queries": QUERIES[:1], "k": 2}).json()["results"]
    assert len(one) == 1 and [h["doc_id"] for h in one[0]] == [h["doc_id"] for h in many[0]]


# ---------------------------------------------------------------------------------------------- writes
def test_writes_are_committed_and_visible(http: httpx.Client, indexes: dict[str, Path]) -> None:
    added = http.post("/v1/indexes/scratch/documents", json={"documents": [
        {"id": "w-1", "text": "zebras graze on the savanna", "metadata": {"lang": "en", "kind": "write"}},
        {"id": "w-2", "text": "penguins swim in cold water", "metadata": {"lang": "en", "kind": "write"}}]})
    assert added.status_code == 200 and added.json()["added"] == 2, added.text
    with IndexStore.open(indexes["scratch"]) as store:  # committed: another connection reads it
        assert [d["text"] for d in store.get_documents(["w-1", "w-2"])] == ["zebras graze on the savanna",
                                                                              "penguins swim in cold water"]
    hits = http.post("/v1/search", json={"index": "scratch", "query": "zebras", "k": 20,
                                         "filter": {"kind": "write"}}).json()["results"][0]
    assert {h["doc_id"] for h in hits} == {"w-1", "w-2"}, "a search right after the write sees it"

    changed = http.post("/v1/indexes/scratch/documents", json={"documents": [
        {"id": "w-1", "text": "zebras graze on the open savanna", "metadata": {"lang": "en", "kind": "write"}}]})
    assert changed.json()["replaced"] == 1
    assert http.request("DELETE", "/v1/indexes/scratch/documents", json={"filter": {"kind": "write"}}).json() == \
           {"index": "scratch", "deleted": 2}
    stats = http.get("/v1/indexes/scratch").json()
    assert stats["documents"] == len(DOCS) and stats["vectors"] == stats["chunks"] and "path" not in stats
    assert http.request("DELETE", "/v1/indexes/scratch/documents", json={"ids": ["nope"]}).json()["deleted"] == 0


def test_concurrent_clients_leave_exactly_the_expected_documents(base: str, indexes: dict[str, Path]) -> None:
    """16 clients mixing upserts, deletes and searches for a few seconds; each owns its own ids."""
    before = {d["id"]: d["text"] for d in DOCS}
    deadline = time.monotonic() + 3.0

    def client_run(n: int) -> tuple[dict[str, str], set[str], list[str]]:
        rng = random.Random(n)
        mine: dict[str, str] = {}
        deleted: set[str] = set()
        failures: list[str] = []
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
            step = 0
            while time.monotonic() < deadline:
                step += 1
                action = rng.choice(["upsert", "upsert", "delete", "search"])
                if action == "upsert":
                    doc_id = f"c{n}-{rng.randrange(6)}"
                    text = f"client {n} writes document {doc_id} version {step}"
                    response = http.post("/v1/indexes/scratch/documents",
                                         json={"documents": [{"id": doc_id, "text": text, "metadata": {"client": n}}]})
                    if response.status_code == 200:
                        mine[doc_id] = text
                        deleted.discard(doc_id)
                elif action == "delete" and mine:
                    doc_id = rng.choice(sorted(mine))
                    response = http.request("DELETE", "/v1/indexes/scratch/documents", json={"ids": [doc_id]})
                    if response.status_code == 200:
                        assert response.json()["deleted"] == 1, "this client's own document was there"
                        del mine[doc_id]
                        deleted.add(doc_id)
                else:
                    response = http.post("/v1/search", json={"index": "scratch", "query": f"client {n}", "k": 3})
                if response.status_code != 200:
                    failures.append(f"{action}: {response.status_code} {response.text[:200]}")
        return mine, deleted, failures

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(client_run, range(16)))
    assert [f for _, _, fs in outcomes for f in fs] == []
    expected = dict(before)
    for mine, _, _ in outcomes:
        expected.update(mine)
    gone = set().union(*(deleted for _, deleted, _ in outcomes))
    assert sum(len(m) for m, _, _ in outcomes) > 16, "the clients did write"
    stats = httpx.get(f"{base}/v1/indexes/scratch", headers=AUTH).json()
    assert stats["documents"] == len(expected) and stats["vectors"] == stats["chunks"]
    with IndexStore.open(indexes["scratch"]) as store:
        assert {d["id"]: d["text"] for d in store.get_documents(sorted(expected))} == expected
        assert store.get_documents(sorted(gone)) == []


# ---------------------------------------------------------------------------------------------- bad input
BAD = [
    # (method, path, json body or raw bytes, headers, status, words in the message)
    ("POST", "/v1/embeddings", b'{"model": "docs", "input": [', None, 400, "not valid JSON"),
    ("POST", "/v1/embeddings", b'["docs"]', None, 400, "JSON object"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": ""}, None, 400, "input[0] is empty"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": ["ok", "  "]}, None, 400, "input[1] is empty"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": []}, None, 400, "input is empty"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": ["x"] * 21}, None, 400, "at most 20"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": "x" * 2001}, None, 400, "at most 2000 per text"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": [[1, 2, 3]]}, None, 400, "token-id array"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": [17, 4]}, None, 400, "token-id array"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": 5}, None, 400, "string or a list of strings"),
    ("POST", "/v1/embeddings", {"model": "gpt-4", "input": "x"}, None, 400, "'gpt-4' is not served"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": "x", "dimensions": 8}, None, 400, "dimensions=8"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": "x", "task": "nope"}, None, 400, "unknown task"),
    ("POST", "/v1/embeddings", {"model": "docs", "input": "x", "encoding_format": "int8"}, None, 400,
     "encoding_format"),
    ("POST", "/v1/embeddings", {"input": "x"}, None, 400, "model: is required"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "k": "3"}, None, 400, "k: Input should be a valid integer"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "k": 0}, None, 400, "k: Input should be greater"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "kk": 3}, None, 400, "kk: is not a known field"),
    ("POST", "/v1/search", {"index": "docs"}, None, 400, "give either query"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "queries": ["y"]}, None, 400, "give either query"),
    ("POST", "/v1/search", {"index": "docs", "query": " "}, None, 400, "query[0] is empty"),
    ("POST", "/v1/search", {"index": "../docs", "query": "x"}, None, 404, "no index named '../docs'"),
    ("POST", "/v1/search", {"index": "missing", "query": "x"}, None, 404, "served indexes: docs, scratch"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "task": "scifactt"}, None, 400, "Did you mean"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "filter": {"year": {"$near": 3}}}, None, 400, "$near"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "filter": {"colour": "red"}}, None, 400, "'colour'"),
    ("POST", "/v1/search", {"index": "docs", "query": "x", "mmr": True, "hybrid": True}, None, 400, "choose one"),
    ("POST", "/v1/indexes/docs/documents", {"documents": []}, None, 400, "documents: List should have at least 1"),
    ("POST", "/v1/indexes/docs/documents", {"documents": [{"id": "e", "text": ""}]}, None, 400,
     "documents[0] is empty"),
    ("POST", "/v1/indexes/docs/documents", {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, None,
     400, "appears twice"),
    ("POST", "/v1/indexes/nope/documents", {"documents": [{"text": "x"}]}, None, 404, "no index named 'nope'"),
    ("DELETE", "/v1/indexes/docs/documents", {}, None, 400, "give ids"),
    ("DELETE", "/v1/indexes/docs/documents", {"filter": {"colour": "red"}}, None, 400, "'colour'"),
    ("GET", "/v1/indexes/nope", None, None, 404, "no index named 'nope'"),
    ("GET", "/v1/nothing", None, None, 404, "no route"),
    ("POST", "/v1/search", b"x" * 200_001, None, 413, "over 200000 bytes"),
    ("GET", "/v1/models", None, {"Authorization": ""}, 401, "missing API key"),
    ("POST", "/v1/search", {"index": "docs", "query": "x"}, {"Authorization": "Bearer wrong"}, 401, "invalid API key"),
    ("POST", "/v1/embeddings", b"{not json", {"Authorization": "Basic abc"}, 401, "missing API key"),
]


@pytest.mark.parametrize("method,path,body,headers,status,words", BAD,
                         ids=[f"{i}-{case[-1][:24]}" for i, case in enumerate(BAD)])
def test_bad_input_is_a_4xx_naming_the_problem(http: httpx.Client, method: str, path: str, body: Any,
                                               headers: dict[str, str] | None, status: int, words: str) -> None:
    request_headers = {**AUTH, "Content-Type": "application/json", **(headers or {})}
    if isinstance(body, bytes):
        response = http.request(method, path, content=body, headers=request_headers)
    else:
        response = http.request(method, path, json=body, headers=request_headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"]
    assert "Traceback" not in response.text and KEY not in response.text


def test_a_streamed_body_over_the_limit_is_a_413(http: httpx.Client) -> None:
    chunks = iter([b"x" * 100_000] * 3)  # no Content-Length: counted while it streams in
    response = http.post("/v1/search", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over 200000 bytes" in response.json()["error"]["message"]


def test_openai_client_sees_the_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not served"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).embeddings.create(
            model="docs", input="x")


# ---------------------------------------------------------------------------------------------- operations
def test_health_ready_and_metrics(base: str, http: httpx.Client) -> None:
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}, "probes need no key"
    assert httpx.get(f"{base}/ready").json()["indexes"] == ["docs", "scratch"]
    http.post("/v1/search", json={"index": "docs", "query": "x"})
    http.post("/v1/search", json={"index": "nope", "query": "x"})
    text = httpx.get(f"{base}/metrics").text
    assert 'l2v_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'l2v_errors_total{status="404"}' in text
    for name in ("l2v_request_seconds_bucket", "l2v_batch_size_bucket", "l2v_queue_depth", "l2v_texts_encoded_total",
                 "l2v_tokens_encoded_total"):
        assert name in text


def test_cors_is_off_by_default(base: str) -> None:
    preflight = httpx.options(f"{base}/v1/search", headers={"Origin": "http://elsewhere.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_a_model_that_cannot_load_is_reported_not_served(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="failed to load: .*model not found"):
        with live_server(ServerSettings(model=str(tmp_path / "missing-model"))):
            pass


# ---------------------------------------------------------------------------------------------- batching
class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def observe_batch(self, model: str, texts: int, tokens: int) -> None:
        self.batches.append(texts)

    def set_queue_depth(self, model: str, depth: int) -> None:
        pass


def test_micro_batching_groups_requests_and_routes_rows_back(tiny_encoder: LLM2VecEncoder) -> None:
    recorder = Recorder()
    batcher = BatchingEncoder(tiny_encoder, max_batch=8, max_wait_ms=50, observer=recorder)
    texts = [f"text number {i} " + "word " * (i % 5) for i in range(24)]
    instructions = [None if i % 2 else "Retrieve passages" for i in range(24)]
    try:
        start = threading.Barrier(12)

        def request(i: int) -> np.ndarray:
            start.wait()
            return batcher.submit(texts[2 * i: 2 * i + 2], instructions[2 * i: 2 * i + 2]).result().vectors

        with ThreadPoolExecutor(12) as pool:
            got = np.concatenate(list(pool.map(request, range(12))))
        big = batcher.submit(texts, instructions).result()  # 24 texts: cut into batches of at most 8
        bad = batcher.submit(["fine", ""], [None, None])
        good = batcher.submit(["also fine"], [None])
        with pytest.raises(ValueError, match="empty"):
            bad.result()
        assert good.result().vectors.shape == (1, tiny_encoder.dim), "one request's bad input fails only itself"
    finally:
        batcher.close()
    expected = tiny_encoder.encode(texts, instructions)
    assert cosines(got, expected).min() >= 0.9999 and cosines(big.vectors, expected).min() >= 0.9999
    assert max(recorder.batches) == 8 and len(recorder.batches) < 12 + 3 + 4, "concurrent requests shared passes"
    assert big.tokens == sum(len(tiny_encoder.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


# ---------------------------------------------------------------------------------------------- life cycle
def test_lock_conflict_and_shutdown_closes_indexes(tmp_path: Path, tiny_llama: Path) -> None:
    path = tmp_path / "lifecycle"
    with Indexer(path, model=str(tiny_llama)) as indexer:
        indexer.add_documents(DOCS[:3])
    other = Indexer(path)  # another writer holds the index: the server's writes are refused, not queued forever
    with live_server(ServerSettings(indexes=(path,))) as url:
        document = {"documents": [{"id": "late", "text": "written through the server"}]}
        refused = httpx.post(f"{url}/v1/indexes/lifecycle/documents", json=document)
        assert refused.status_code == 409 and "being written" in refused.json()["error"]["message"]
        other.close()
        assert httpx.post(f"{url}/v1/indexes/lifecycle/documents", json=document).status_code == 200
        with pytest.raises(IndexLockedError):
            Indexer(path)
    with Indexer(path) as reopened:  # the server released its write lock and left a current snapshot
        assert reopened.stats()["documents"] == 4
        assert not reopened.store.snapshot_stale


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("args,words", [
    (["--host", "0.0.0.0"], "reachable from other machines"),
    ([], "nothing to serve"),
])
def test_cli_refuses_unsafe_or_empty(args: list[str], words: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L2V_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2 and words in result.output


def test_cli_empty_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text("\n")
    result = CliRunner().invoke(main, ["serve", "--model", "x", "--api-key-file", str(key_file)])
    assert result.exit_code == 2 and "is empty" in result.output


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


# ---------------------------------------------------------------------------------------------- the command
def test_l2v_serve_stops_cleanly_on_sigterm(tmp_path: Path, tiny_llama: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """`l2v serve` answers, and on SIGTERM finishes, closes the index (snapshot written, lock freed), exits 0."""
    path = tmp_path / "served"
    with Indexer(path, model=str(tiny_llama)) as indexer:
        indexer.add_documents(DOCS[:2])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    received: list[int] = []
    # uvicorn handles SIGTERM, then re-raises it to the handler it found: this one, not the default (which would
    # end pytest)
    signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    outcome: dict[str, Any] = {}

    def client() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        outcome["write"] = httpx.post(f"{url}/v1/indexes/served/documents", timeout=60,
                                      json={"documents": [{"id": "new", "text": "written before the signal"}]})
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=client, daemon=True)
    helper.start()
    try:
        with caplog.at_level(logging.INFO):
            result = CliRunner().invoke(main, ["serve", str(path), "--port", str(port)])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    helper.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert outcome["write"].status_code == 200 and received == [signal.SIGTERM]
    assert f"{url}/v1/search" in caplog.text and "closed 1 index" in caplog.text
    with Indexer(path) as reopened:
        assert reopened.stats()["documents"] == 3
        assert not reopened.store.snapshot_stale, "a clean stop writes the FAISS snapshot"


@pytest.mark.integration
def test_the_bare_embedded_name_stands_for_its_default_recipe() -> None:
    from retriever.server.registry import _embedded_alias

    assert _embedded_alias("smollm2-135m:mntp+supervised+distill2") == "smollm2-135m"
    assert _embedded_alias("smollm2-135m:mntp+supervised+distill") is None  # an earlier default, by its own name
    assert _embedded_alias("smollm2-135m:mntp+supervised") is None
    assert _embedded_alias("smollm2-135m:base") is None and _embedded_alias("my-model") is None
