"""Metrics on an HTTP port and one JSON log line per request, from a real server over a real store."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from indexing_support import write_photos

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.cli.logs import JsonFormatter
from latentdex.service.client import ServerError, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

TOKEN = "metrics-test-token"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("observed")
    write_photos(root / "photos", 7, size=64)
    codec = LatentCodec.load()
    index_folder(root / "photos", root / "store", codec, IndexOptions(workers=1))
    live = LiveStore(root / "store")
    server = start_server(QueryEngine(codec, live), ServerConfig(port=0, metrics_port=0, token=TOKEN))
    yield server
    server.stop(0)
    live.close()


def scrape(running: RunningServer) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_rpc_and_status_and_time_the_stages(running: RunningServer) -> None:
    before = scrape(running)
    with connect(f"127.0.0.1:{running.port}", token=TOKEN) as client:
        for _ in range(3):
            client.query_by_latent(np.ones(128, np.float32), 2)
        with pytest.raises(ServerError):
            client.query_by_latent(np.ones(5, np.float32), 2)
    with connect(f"127.0.0.1:{running.port}", token="wrong") as stranger, pytest.raises(ServerError):
        stranger.info()
    after = scrape(running)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("latentdex_requests_total", rpc="QueryByLatent", code="OK") == 3
    assert grew("latentdex_requests_total", rpc="QueryByLatent", code="INVALID_ARGUMENT") == 1
    assert grew("latentdex_requests_total", rpc="GetInfo", code="UNAUTHENTICATED") == 1
    assert grew("latentdex_request_seconds_count", rpc="QueryByLatent") == 4
    assert grew("latentdex_stage_seconds_count", stage="search") == 3
    # stages a query by latent without previews does not pass through are not counted as taking time
    for stage in ("image_decode", "encode", "preview", "thumbnail"):
        assert grew("latentdex_stage_seconds_count", stage=stage) == 0, stage
    assert sample(after, "latentdex_store_images") == 7
    assert sample(after, "latentdex_model_info", model_id=LatentCodec.load().model_id) == 1


def test_each_request_logs_one_json_line_with_its_id(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.LatentdexStub(channel)
    request = pb.QueryByLatentRequest(latent=pb.Latent(values=[0.5] * 128), options=pb.QueryOptions(k=3))
    metadata = (("authorization", f"Bearer {TOKEN}"), ("x-request-id", "req-42"))
    with caplog.at_level(logging.INFO, logger="latentdex.requests"):
        reply, call = stub.QueryByLatent.with_call(request, metadata=metadata, timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.QueryById(pb.QueryByIdRequest(id=999_999), metadata=metadata[:1], timeout=10)
    channel.close()
    assert len(reply.matches) == 3
    assert ("x-request-id", "req-42") in tuple(call.initial_metadata())
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "latentdex.requests"]
    ok = next(line for line in lines if line["request_id"] == "req-42")
    assert ok["rpc"] == "/latentdex.v1.Latentdex/QueryByLatent" and ok["k"] == 3 and ok["status"] == "OK"
    assert ok["ms"] > 0
    failed = next(line for line in lines if line["rpc"].endswith("/QueryById"))
    assert failed["status"] == "NOT_FOUND" and "no indexed image" in failed["error"]
    assert re.fullmatch(r"[0-9a-f]{16}", failed["request_id"])  # made by the server when not sent


def test_the_json_formatter_embeds_json_messages_and_wraps_plain_ones() -> None:
    formatter = JsonFormatter()
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "disk %s", ("full",), None)
    structured = logging.LogRecord("y", logging.INFO, __file__, 1, '{"rpc": "/a/B", "ms": 1.5}', (), None)
    assert json.loads(formatter.format(plain))["message"] == "disk full"
    line = json.loads(formatter.format(structured))
    assert (line["rpc"], line["ms"], line["level"], line["logger"]) == ("/a/B", 1.5, "info", "y")
