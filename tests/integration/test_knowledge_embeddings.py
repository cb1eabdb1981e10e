"""The dense embedders (insightmesh.knowledge.embedders) against loopback stand-ins.

``openai``: the OpenAI-compatible stand-in's ``/v1/embeddings`` (retries honouring Retry-After,
the circuit breaker, refusals). ``bedrock``: a small ``InvokeModel`` stand-in on 127.0.0.1 that
boto3 reaches through ``AWS_ENDPOINT_URL``, so the request is signed and parsed by botocore as
against AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from insightmesh import resilience
from insightmesh.knowledge.embedders import BedrockEmbedder, OpenAIEmbedder
from insightmesh.knowledge.embedders.base import EmbeddingRequestError, EmbeddingUnavailableError
from insightmesh.knowledge.settings import KnowledgeConfigurationError
from insightmesh.resilience import BreakerState, CircuitBreaker
from tests.standins.openai_server import embed_text
from tests.standins.openai_server import start as start_openai


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    resilience._breakers.clear()
    yield
    resilience._breakers.clear()


@pytest.fixture
def openai() -> Iterator[Any]:
    server, _ = start_openai()
    try:
        yield server
    finally:
        server.stop()


def embedder(server: Any, sleeps: list[float], **options: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(base_url=server.base_url, model="standin-embedding", dimensions=16,
                          sleep=sleeps.append, **options)


def test_the_standin_speaks_the_embeddings_wire_format(openai):
    single = httpx.post(f"{openai.base_url}/embeddings", json={"model": "m", "input": "hello world"}).json()
    assert single["object"] == "list" and len(single["data"]) == 1
    assert len(single["data"][0]["embedding"]) == 64 and single["usage"]["prompt_tokens"] >= 1
    many = httpx.post(f"{openai.base_url}/embeddings",
                      json={"model": "m", "input": ["a b", "c"], "dimensions": 8}).json()
    assert [item["index"] for item in many["data"]] == [0, 1]
    assert many["data"][0]["embedding"] == embed_text("a b", 8)
    assert abs(sum(v * v for v in many["data"][1]["embedding"]) - 1.0) < 1e-9
    real_default = httpx.post(f"{openai.base_url}/embeddings",
                              json={"model": "text-embedding-3-small", "input": "x"}).json()
    assert len(real_default["data"][0]["embedding"]) == 1536
    empty = httpx.post(f"{openai.base_url}/embeddings", json={"model": "m", "input": ["ok", ""]})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input[1]"
    assert httpx.post(f"{openai.base_url[:-3]}/embeddings", json={"model": "m", "input": "x"}).status_code == 200
    assert len(openai.embedding_requests()) == 5


def test_batches_order_and_dimensions(openai):
    texts = [f"text number {n}" for n in range(10)]
    vectors = embedder(openai, [], batch_size=4).embed(texts)
    assert vectors == [embed_text(text, 16) for text in texts]
    assert [len(call.json["input"]) for call in openai.embedding_requests()] == [4, 4, 2]
    assert all(call.json["dimensions"] == 16 for call in openai.embedding_requests())
    assert embedder(openai, []).embed([]) == []


def test_retries_honour_retry_after(openai):
    sleeps: list[float] = []
    openai.set_mode("ok", retry_after="2")
    openai.fail_next("429", "error")
    vectors = embedder(openai, sleeps).embed(["hello"])
    assert vectors == [embed_text("hello", 16)]
    assert sleeps[0] == 2.0 and len(sleeps) == 2  # Retry-After, then a jittered backoff
    assert [call.mode for call in openai.embedding_requests()] == ["429", "error", "ok"]


def test_exhausted_retries_then_the_circuit_opens(openai):
    breaker = CircuitBreaker("embeddings:test", failure_threshold=3, cool_down=60)
    client = embedder(openai, [], breaker=breaker, attempts=3)
    openai.set_mode("error")
    with pytest.raises(EmbeddingUnavailableError, match="unavailable"):
        client.embed(["x"])
    assert breaker.state is BreakerState.OPEN
    before = len(openai.embedding_requests())
    with pytest.raises(EmbeddingUnavailableError, match="circuit is open"):
        client.embed(["x"])
    assert len(openai.embedding_requests()) == before  # not called while open


def test_refusals_and_nonsense_are_request_errors(openai):
    openai.require_api_key("secret")
    with pytest.raises(EmbeddingRequestError, match="HTTP 401"):
        embedder(openai, []).embed(["x"])
    assert len(openai.embedding_requests()) == 1  # a refusal is not retried
    keyed = OpenAIEmbedder(base_url=openai.base_url, model="m", dimensions=16, api_key=lambda: "secret")
    assert len(keyed.embed(["x"])[0]) == 16
    assert openai.embedding_requests()[-1].header("Authorization") == "Bearer secret"
    openai.require_api_key(None)
    openai.set_mode("invalid")
    with pytest.raises(EmbeddingRequestError, match="0 embeddings for 1"):
        embedder(openai, []).embed(["x"])
    openai.set_mode("ok")
    wrong_size = OpenAIEmbedder(base_url=openai.base_url, model="text-embedding-3-small")  # expects 1536
    assert wrong_size.dimensions() == 1536
    assert len(wrong_size.embed(["x"])[0]) == 1536


# -- Bedrock (Titan text embeddings v2 through InvokeModel) -------------------------------------------


class InvokeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), InvokeHandler)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.script: list[str] = []
        self.lock = threading.Lock()


class InvokeHandler(BaseHTTPRequestHandler):
    server: InvokeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        model = unquote(self.path.split("/")[2])
        with self.server.lock:
            self.server.requests.append((model, body))
            mode = self.server.script.pop(0) if self.server.script else "ok"
        if mode == "throttle":
            self._send(429, {"message": "Too many requests"}, error="ThrottlingException")
        elif mode == "validation":
            self._send(400, {"message": "bad dimensions"}, error="ValidationException")
        else:
            size = body.get("dimensions", 1024)
            self._send(200, {"embedding": embed_text(body["inputText"], size), "inputTextTokenCount": 3})

    def _send(self, status: int, payload: Any, error: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error:
            self.send_header("X-Amzn-ErrorType", f"{error}:http://internal.amazon.com/coral/com.amazon.bedrock/")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[InvokeServer]:
    server = InvokeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_bedrock_titan_v2_embeddings(bedrock):
    sleeps: list[float] = []
    client = BedrockEmbedder(model="amazon.titan-embed-text-v2:0", dimensions=256, batch_size=3, concurrency=2,
                             sleep=sleeps.append)
    assert client.dimensions() == 256 and client.name == "bedrock:amazon.titan-embed-text-v2:0:256"
    texts = [f"passage {n}" for n in range(5)]
    assert client.embed(texts) == [embed_text(text, 256) for text in texts]
    models = {model for model, _ in bedrock.requests}
    assert models == {"amazon.titan-embed-text-v2:0"}
    assert all(body["dimensions"] == 256 and body["normalize"] is True for _, body in bedrock.requests)
    bedrock.script[:] = ["throttle"]
    assert client.embed(["again"]) == [embed_text("again", 256)]
    assert len(sleeps) == 1
    bedrock.script[:] = ["validation"]
    with pytest.raises(EmbeddingRequestError, match="ValidationException"):
        client.embed(["refused"])


def test_bedrock_default_size_and_invalid_dimensions(bedrock):
    assert BedrockEmbedder(model="amazon.titan-embed-text-v2:0").dimensions() == 1024
    with pytest.raises(KnowledgeConfigurationError, match="EMBEDDING_DIMENSIONS"):
        BedrockEmbedder(model="amazon.titan-embed-text-v2:0", dimensions=300)
