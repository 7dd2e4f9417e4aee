"""One table of error kinds: each is answered with its gRPC status by a real server, raised as the same
kind by the client, and exits the CLI with its documented code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from conftest import shape_image

from latentdex.errors import ERROR_KINDS, LatentdexError
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import main
from latentdex.service.cli.exit_codes import exit_code_for
from latentdex.service.client import ServerError, _server_error_of
from latentdex.service.status import answering

REPO = Path(__file__).resolve().parents[1]
METHOD = "/latentdex.test.Raise/Raise"


def client_call(call: grpc.UnaryUnaryMultiCallable, request: bytes) -> object:
    """`call` as the client makes its calls: a failed one raises the client's ServerError."""
    try:
        return call(request, timeout=10)
    except grpc.RpcError as exc:
        raise _server_error_of(exc) from exc


def documented_exit_codes() -> dict[int, str]:
    """The README's exit-code sentence as {code: meaning}."""
    readme = (REPO / "README.md").read_text()
    sentence = re.search(r"exit code per kind: (.*?)\.\n\n", readme, re.S)
    assert sentence, "the README lists the exit codes"
    text = " ".join(sentence.group(1).split())
    return {int(code): meaning for code, meaning in re.findall(r"(\d+) ([^,]+?)(?:,|$)", text)}


@pytest.fixture(scope="module")
def raising_server() -> Iterator[grpc.Channel]:
    """A real server whose one method raises the error kind named in its request, inside `answering`."""

    def raise_kind(request: bytes, context: grpc.ServicerContext) -> bytes:
        with answering(context):
            raise ERROR_KINDS[request.decode()](f"a {request.decode()} for the test")

    handler = grpc.method_handlers_generic_handler(
        "latentdex.test.Raise", {"Raise": grpc.unary_unary_rpc_method_handler(raise_kind)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(0)


@pytest.mark.parametrize("name", sorted(ERROR_KINDS))
def test_each_kind_crosses_server_client_and_cli_as_itself(raising_server: grpc.Channel, name: str) -> None:
    kind = ERROR_KINDS[name]
    call = raising_server.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    with pytest.raises(ServerError) as caught:
        client_call(call, name.encode())
    error = caught.value
    assert error.code == kind.status  # the server's status, from the one table
    assert isinstance(error, kind) and isinstance(error, LatentdexError)  # the client's kind
    assert f"a {name} for the test" in str(error)
    assert exit_code_for(error) == kind.exit_code  # the CLI's code
    assert kind.exit_code in documented_exit_codes(), f"{name}: exit {kind.exit_code} is not in the README"


def test_a_status_the_server_did_not_name_is_a_plain_server_error(raising_server: grpc.Channel) -> None:
    call = raising_server.unary_unary("/latentdex.test.Raise/Missing")
    with pytest.raises(ServerError) as caught:
        client_call(call, b"")
    assert caught.value.code == "UNIMPLEMENTED" and type(caught.value) is ServerError
    assert exit_code_for(caught.value) == 10 and "server" in documented_exit_codes()[10]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kinds")
    (root / "photos").mkdir()
    for i in range(6):
        shape_image(i, i % 3, 64).save(root / "photos" / f"p{i}.png")
    index_folder(root / "photos", root / "store", LatentCodec.load(), IndexOptions(workers=1))
    return root / "store"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["edit", "id:999", "--direction", "d", "--out", "{tmp}/e.png"], 6),  # no image 999: not found
        (["edit", "id:1", "--direction", "nowhere", "--out", "{tmp}/e.png"], 6),  # no such direction
        (["generate", "--count", "500", "--out", "{tmp}/g.png"], 2),  # over the cap: an invalid request
        (["traverse", "id:1", "--top", "99", "--out", "{tmp}/t.png"], 2),
    ],
    ids=["unknown-id", "unknown-direction", "too-many-samples", "too-many-dimensions"],
)
def test_the_cli_exits_with_the_kinds_code_through_its_in_process_server(
    store: Path,
    tmp_path: Path,
    args: list[str],
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["latentdex", *(a.replace("{tmp}", str(tmp_path)) for a in args), "--store", str(store)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == code, err
    assert err.lower().startswith(("error: ", "usage: ")), err
