"""The HTTP/JSON side of a real server on a loopback port: every route, the error mapping, caching,
uploads, the token (header and cookie), and thumbnails that never leave the indexed folder."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from indexing_support import save_tiny_model, write_photos
from PIL import Image

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.search_filter import SearchFilter
from latentdex.models.inference import LatentCodec
from latentdex.service.client import ServerError, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb

PHOTOS = 9
TOKEN = "web-s3cret"
MAX_BODY = 2 * 1024 * 1024
SERVICE = pb.DESCRIPTOR.services_by_name["Latentdex"]
FUZZ_SEED = int(os.environ.get("LATENTDEX_FUZZ_SEED", "0"))
FUZZ_EXAMPLES = int(os.environ.get("LATENTDEX_FUZZ_EXAMPLES", "60"))
_png = io.BytesIO()
Image.new("RGB", (16, 16), (10, 200, 30)).save(_png, "PNG")
PNG_BYTES = _png.getvalue()


@dataclass
class Served:
    running: RunningServer
    photos: list[Path]
    root: Path

    @property
    def port(self) -> int:
        assert self.running.http_port is not None
        return self.running.http_port


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return Answer(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        connection.close()


def post_json(port: int, method: str, message: dict, headers: dict[str, str] | None = None) -> Answer:
    return request(port, "POST", f"/v1/{method}", json.dumps(message).encode(), headers)


def serve(tmp_path: Path, token: str | None = None) -> Iterator[Served]:
    root = tmp_path / "photos"
    photos = write_photos(root, PHOTOS)
    codec = LatentCodec.load(save_tiny_model(tmp_path / "model"))
    index_folder(root, tmp_path / "store", codec, IndexOptions(workers=1))
    live = LiveStore(tmp_path / "store")
    config = ServerConfig(port=0, http_port=0, token=token, max_message_bytes=MAX_BODY)
    running = start_server(QueryEngine(codec, live), config)
    try:
        yield Served(running, photos, root)
    finally:
        running.stop(0)
        live.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("web-token"), token=TOKEN)


def test_info_names_the_model_the_store_and_its_last_run(served: Served) -> None:
    info = post_json(served.port, "GetInfo", {})
    assert info.status == 200 and info.headers["content-type"].startswith("application/json")
    body = info.json()
    assert body["imageCount"] == str(PHOTOS) and body["hasStore"] is True
    assert body["lastRun"]["status"] == "complete" and body["lastRun"]["new"] == str(PHOTOS)


def test_an_uploaded_image_finds_itself_first_and_the_query_string_sets_the_options(served: Served) -> None:
    photo = served.photos[4]
    found = request(
        served.port,
        "POST",
        "/v1/QueryByImage?options.k=3&options.filter.pathPrefix=photo00&options.preview.thumbnails=false",
        photo.read_bytes(),
        {"Content-Type": "image/png"},
    )
    assert found.status == 200, found.body
    matches = found.json()["matches"]
    assert len(matches) == 3 and matches[0]["path"] == photo.name
    assert all(m["path"].startswith("photo00") for m in matches)
    assert "thumbnail" not in matches[0] and "preview" not in matches[0]


def test_json_requests_reach_every_kind_of_query(served: Served) -> None:
    by_id = post_json(served.port, "QueryById", {"id": "2", "options": {"k": 4}})
    assert by_id.status == 200
    assert len(by_id.json()["matches"]) == 4 and all(m["id"] != "2" for m in by_id.json()["matches"])
    latent = by_id.json()["queryLatent"]
    by_latent = post_json(served.port, "QueryByLatent", {"latent": latent, "options": {"k": 1}})
    assert by_latent.json()["matches"][0]["id"] == "2"
    frames = post_json(
        served.port,
        "Interpolate",
        {"start": {"id": "1"}, "end": {"id": "3"}, "steps": 4, "frames": {"nearestK": 1}},
    )
    assert frames.status == 200, frames.body
    assert len(frames.json()["frames"]) == 4 and frames.json()["frames"][0]["nearest"][0]["id"] == "1"


def test_pages_of_the_library_cover_every_image_once(served: Served) -> None:
    seen, token, pages = [], "", 0
    while True:
        page = post_json(served.port, "ListImages", {"pageSize": 4, "pageToken": token}).json()
        assert page["totalCount"] == str(PHOTOS)
        seen += [image["id"] for image in page["images"]]
        pages += 1
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert pages == 3 and sorted(seen, key=int) == seen and len(set(seen)) == PHOTOS
    bad = post_json(served.port, "ListImages", {"pageToken": "not-a-token"})
    assert bad.status == 400 and bad.json()["kind"] == "InvalidQuery"
    too_big = post_json(served.port, "ListImages", {"pageSize": 5000})
    assert too_big.status == 400


def test_thumbnails_and_previews_are_images_with_cache_headers(served: Served) -> None:
    thumbnail = request(served.port, "GET", "/v1/images/1/thumbnail?size=24")
    assert thumbnail.status == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.body)).size) == 24
    assert "max-age" in thumbnail.headers["cache-control"] and thumbnail.headers["etag"]
    again = request(
        served.port,
        "GET",
        "/v1/images/1/thumbnail?size=24",
        headers={"If-None-Match": thumbnail.headers["etag"]},
    )
    assert again.status == 304 and again.body == b""
    preview = request(served.port, "GET", "/v1/images/1/preview?size=48&format=webp")
    assert preview.status == 200 and preview.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(preview.body)).size == (48, 48)
    assert request(served.port, "GET", "/v1/images/999/thumbnail").status == 404
    assert request(served.port, "GET", "/v1/images/1/thumbnail?format=gif").status == 400


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images/../../etc/passwd/thumbnail",
        "/v1/images/..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/v1/images/%2Fetc%2Fpasswd/thumbnail",
        "/v1/images//etc/passwd/thumbnail",
        "/static/..%2F..%2Fhttp_gateway.py",
        "/static/../http_gateway.py",
        "/v1/images/1/thumbnail/../../../../etc/passwd",
    ],
)
def test_no_request_path_reaches_a_file(served: Served, path: str) -> None:
    answer = request(served.port, "GET", path)
    assert answer.status == 404
    assert b"root:" not in answer.body and b"import" not in answer.body


def test_a_symlink_out_of_the_indexed_folder_is_never_read(tmp_path: Path) -> None:
    for served in serve(tmp_path):
        secret = tmp_path / "outside.png"
        Image.new("RGB", (40, 40), (255, 0, 0)).save(secret)
        target = served.photos[0]
        target.unlink()
        target.symlink_to(secret)
        answer = request(served.port, "GET", "/v1/images/1/thumbnail?size=16")
        assert answer.status == 404 and not answer.headers["content-type"].startswith("image/")
        inside = request(served.port, "GET", "/v1/images/2/thumbnail?size=16")
        assert inside.status == 200


def test_errors_carry_the_grpc_code_its_http_status_and_the_error_kind(served: Served) -> None:
    wrong = post_json(served.port, "QueryByLatent", {"latent": {"values": [1.0, 2.0]}})
    assert wrong.status == 400 and wrong.json()["code"] == "INVALID_ARGUMENT"
    assert wrong.json()["kind"] == "DimensionMismatch" and "8 values" in wrong.json()["message"]
    missing = post_json(served.port, "QueryById", {"id": "12345"})
    assert missing.status == 404 and missing.json()["kind"] == "NotFound"
    not_image = request(served.port, "POST", "/v1/QueryByImage", b"plain text", {"Content-Type": "image/png"})
    assert not_image.status == 400 and not_image.json()["kind"] == "BadImage"
    assert request(served.port, "POST", "/v1/GetInfo", b"{not json").status == 400
    assert post_json(served.port, "NoSuchMethod", {}).status == 404
    assert post_json(served.port, "GetInfo", {"unknownField": 1}).status == 400
    assert request(served.port, "GET", "/v1/GetInfo").status == 405
    assert request(served.port, "GET", "/nothing-here").status == 404
    noise = np.random.default_rng(1).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, "JPEG", quality=30)  # tens of ms to decode: far past 1 ms
    headers = {"Content-Type": "image/jpeg", "X-Deadline-Ms": "1"}
    late = request(served.port, "POST", "/v1/QueryByImage", big.getvalue(), headers)
    assert late.status == 504 and late.json()["code"] == "DEADLINE_EXCEEDED"


def test_a_body_over_the_cap_is_refused_before_it_is_read(served: Served) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    connection.putrequest("POST", "/v1/QueryByImage")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()  # no body sent: the answer must come without it
    reply = connection.getresponse()
    assert reply.status == 413 and json.loads(reply.read())["code"] == "RESOURCE_EXHAUSTED"
    connection.close()


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    for answer in (
        request(served.port, "GET", "/"),
        post_json(served.port, "GetInfo", {}),
        request(served.port, "GET", "/nothing-here"),
        request(served.port, "GET", "/v1/images/1/thumbnail"),
    ):
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_app_and_its_files_are_served_from_the_package(served: Served) -> None:
    page = request(served.port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    scripts = [part.split('"')[0] for part in page.body.decode().split('src="')[1:]]
    assert scripts, "the page loads its script from /static/"
    for script in scripts:
        asset = request(served.port, "GET", script)
        assert asset.status == 200 and asset.headers["content-type"].startswith("text/javascript")
        cached = request(served.port, "GET", script, headers={"If-None-Match": asset.headers["etag"]})
        assert cached.status == 304


def test_with_a_token_every_call_needs_it_by_header_or_cookie(guarded: Served) -> None:
    port = guarded.port
    assert request(port, "GET", "/").status == 200  # the app shell holds no data
    refused = post_json(port, "GetInfo", {})
    assert refused.status == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    assert request(port, "GET", "/v1/images/1/thumbnail").status == 401
    assert post_json(port, "GetInfo", {}, {"Authorization": "Bearer wrong"}).status == 401
    assert post_json(port, "GetInfo", {}, {"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert request(port, "POST", "/api/session", json.dumps({"token": "wrong"}).encode()).status == 401
    session = request(port, "POST", "/api/session", json.dumps({"token": TOKEN}).encode())
    assert session.status == 204
    cookie = session.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert request(port, "GET", "/v1/images/1/thumbnail", headers=jar).status == 200
    assert post_json(port, "GetInfo", {}, jar).status == 200


def test_stopping_the_server_closes_the_http_port(tmp_path: Path) -> None:
    for served in serve(tmp_path):
        port = served.port
        assert post_json(port, "GetInfo", {}).status == 200
        served.running.stop(0)
        with pytest.raises(OSError):
            request(port, "GET", "/")


def test_the_demo_ends_by_serving_its_store_in_the_web_app(tmp_path: Path) -> None:
    """`make demo` runs `latentdex demo --serve`: it prints the web app's address, the address answers,
    and Ctrl-C ends it."""
    command = [sys.executable, "-m", "latentdex.service.cli", "demo", "--out", str(tmp_path), "--serve"]
    process = subprocess.Popen(
        [*command, "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "web app: http://" in line:
                break
        url = next((line.split()[3] for line in lines if "web app: http://" in line), None)
        assert url is not None, "".join(lines)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert request(port, "GET", "/").status == 200
        info = post_json(port, "GetInfo", {}).json()
        assert int(info["imageCount"]) == len(list((tmp_path / "samples").iterdir()))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()


FIELD_NAMES = st.sampled_from(
    [
        "options.k",
        "options.filter.pathPrefix",
        "options.filter.formats",
        "options.preview.thumbnails",
        "options.filter.capturedAfter",
        "options.filter.minWidth",
        "options.preview.format",
        "options",
        "image",
        "options.k.x",
        "includeLogvar",
        "ids",
        "",
        ".",
        "options..k",
        "\u00e9\u0000",
    ]
)
ODD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["true", "-1", "1e400", "NaN", "9" * 30, "%2F..", "%ZZ"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@seed(FUZZ_SEED)
@settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from([m.name for m in SERVICE.methods] + ["Nope", "getinfo"]),
    body=JSON_VALUES,
    query=st.lists(st.tuples(FIELD_NAMES, ODD_TEXT), max_size=5),
    raw=st.booleans(),
)
def test_no_request_to_the_http_api_gets_a_server_error(
    served: Served, method: str, body: object, query: list[tuple[str, str]], raw: bool
) -> None:
    """Random JSON bodies and query strings for every route: a 4xx or a 2xx with JSON, never a 5xx (a
    deadline, 504, is allowed), and the server answers afterwards."""
    path = f"/v1/{method}?{urlencode(query)}"
    payload = PNG_BYTES if raw else json.dumps(body, allow_nan=True).encode()
    headers = {"Content-Type": "image/png" if raw else "application/json"}
    answer = request(served.port, "POST", path, payload, headers)
    assert answer.status < 500 or answer.status == 504, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    json.loads(answer.body)
    assert post_json(served.port, "GetInfo", {}).status == 200


def test_the_python_client_gets_images_pages_and_the_last_run(served: Served) -> None:
    with connect(f"127.0.0.1:{served.running.port}") as client:
        info = client.info()
        assert info.last_run is not None and info.last_run.status == "complete"
        assert info.last_run.counts["new"] == PHOTOS and info.last_run.ended_at is not None
        image = client.get_image(3, preview=True, size=32, include_latent=True)
        assert image.id == 3 and image.preview is not None and image.preview.width == 32
        assert image.latent is not None and image.thumbnail is None
        thumb = client.get_image(3, thumbnail=True, size=20, image_format="JPEG")
        assert thumb.thumbnail is not None and max(thumb.thumbnail.width, thumb.thumbnail.height) == 20
        first = client.list_images(page_size=5)
        rest = client.list_images(page_size=5, page_token=first.next_page_token)
        assert first.total_count == PHOTOS and rest.next_page_token == ""
        assert [m.id for m in first.images + rest.images] == list(range(1, PHOTOS + 1))
        only = client.list_images(where=SearchFilter(path_prefix="photo003"))
        assert only.total_count == 1 and [m.path for m in only.images] == ["photo003.png"]
        with pytest.raises(ServerError) as missing:
            client.get_image(10_000)
        assert missing.value.code == "NOT_FOUND"
