"""The HTTP side of the server: the web app, and the HTTP/JSON mapping of the gRPC API (docs/HTTP.md).

Every API route becomes a gRPC call to the same process's server, over a private Unix socket, carrying
the caller's token and deadline: the token check, limits, metrics and request log are the gRPC server's
own, and its status codes come back as HTTP statuses (grpc-gateway's table). `ROUTES` is the one place
where HTTP routes meet the handlers. Uploads stay in memory; bodies over the message cap are refused
before they are read.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from latentdex.errors import ERROR_KIND_KEY
from latentdex.service.web_assets import Asset, load_assets
from latentdex.v1 import latentdex_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Latentdex"]
COOKIE_NAME = "latentdex_token"
DEFAULT_DEADLINE_MS = 30_000
MAX_DEADLINE_MS = 600_000
MAX_CONNECTIONS = 64  # connections served at once; more wait in the listen backlog
SOCKET_TIMEOUT_S = 30  # a client that stops sending mid-request frees its thread after this
RAW_IMAGE_METHODS = ("QueryByImage", "Encode")  # an image body fills the request's `image` field

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
IMAGE_CACHE = "private, max-age=86400"
JSON_TYPE = "application/json; charset=utf-8"


class HttpError(Exception):
    """An answer other than success: the HTTP status, the gRPC code's name and a message."""

    def __init__(self, status: int, code: str, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.kind = status, code, message, kind


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200


@dataclass(frozen=True)
class Call:
    """One HTTP request as the routes see it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Any  # http.client.HTTPMessage
    body: bytes
    token: str | None

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""


class Gateway:
    """Routes HTTP calls to the gRPC server at `target` (a private socket of this process)."""

    def __init__(self, target: str, max_body_bytes: int, secure_cookies: bool = False) -> None:
        options = [
            ("grpc.max_receive_message_length", max_body_bytes),
            ("grpc.max_send_message_length", max_body_bytes),
        ]
        self.channel = grpc.insecure_channel(target, options=options)
        self.max_body_bytes = max_body_bytes
        self.secure_cookies = secure_cookies
        self.assets = load_assets()
        self._methods = {
            method.name: self.channel.unary_unary(
                f"/{SERVICE.full_name}/{method.name}",
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=getattr(pb, method.output_type.name).FromString,
            )
            for method in SERVICE.methods
        }
        # (HTTP method, path pattern, handler): the one table where HTTP meets the API
        self.routes: list[tuple[str, re.Pattern[str], Callable[[Call, re.Match[str]], Reply]]] = [
            ("GET", re.compile(r"/"), self.app_page),
            ("GET", re.compile(r"/static/([A-Za-z0-9_.-]{1,64})"), self.static_file),
            ("POST", re.compile(r"/api/session"), self.session),
            ("GET", re.compile(r"/v1/images/([0-9]{1,19})/(thumbnail|preview)"), self.image_file),
            ("POST", re.compile(r"/v1/([A-Za-z]{1,64})"), self.rpc),
        ]

    def close(self) -> None:
        self.channel.close()

    def answer(self, call: Call) -> Reply:
        allowed = set()
        for method, pattern, handler in self.routes:
            found = pattern.fullmatch(call.path)
            if found is None:
                continue
            if method == call.method:
                return handler(call, found)
            allowed.add(method)
        if allowed:
            raise HttpError(405, "UNIMPLEMENTED", f"{call.method} is not allowed here; use {sorted(allowed)}")
        raise HttpError(404, "NOT_FOUND", f"no such route: {call.path}")

    # --- routes --------------------------------------------------------------------------------------

    def app_page(self, call: Call, found: re.Match[str]) -> Reply:
        return self._asset(call, "index.html")

    def static_file(self, call: Call, found: re.Match[str]) -> Reply:
        return self._asset(call, found.group(1))

    def session(self, call: Call, found: re.Match[str]) -> Reply:
        """Check a token (by asking the server for its info with it) and keep it in a cookie."""
        token = str(_json_body(call).get("token", ""))
        self._invoke("GetInfo", pb.GetInfoRequest(), call, token=token)
        cookie = f"{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict"
        if self.secure_cookies:
            cookie += "; Secure"
        return Reply(b"", "text/plain", (("Set-Cookie", cookie),), status=204)

    def image_file(self, call: Call, found: re.Match[str]) -> Reply:
        """The thumbnail of a stored image's original, or the decoding of its latent, as image bytes."""
        params = dict(call.query)
        image_format = params.get("format", "JPEG" if found.group(2) == "thumbnail" else "PNG").upper()
        if image_format not in IMAGE_TYPES:
            raise HttpError(400, "INVALID_ARGUMENT", f"format must be one of {sorted(IMAGE_TYPES)}")
        try:
            size = int(params.get("size", "0"))
        except ValueError:
            raise HttpError(400, "INVALID_ARGUMENT", "size must be a whole number") from None
        thumbnail = found.group(2) == "thumbnail"
        request = pb.GetImageRequest(
            id=int(found.group(1)),
            preview=pb.PreviewOptions(
                matches=not thumbnail,
                thumbnails=thumbnail,
                size=size,
                format=pb.ImageFormat.Value(f"IMAGE_FORMAT_{image_format}"),
            ),
        )
        match = self._invoke("GetImage", request, call)
        picture = match.thumbnail if thumbnail else match.preview
        if not picture.data:
            raise HttpError(404, "NOT_FOUND", f"the original of image {match.id} cannot be read now")
        kind = "thumbnail" if thumbnail else f"preview-{match.metadata.model_id}"
        etag = f'"{match.metadata.content_hash[:32]}-{kind}-{size}-{image_format}"'
        headers = (("Cache-Control", IMAGE_CACHE), ("ETag", etag))
        if call.header("If-None-Match") == etag:
            return Reply(b"", IMAGE_TYPES[image_format], headers, status=304)
        return Reply(picture.data, IMAGE_TYPES[image_format], headers)

    def rpc(self, call: Call, found: re.Match[str]) -> Reply:
        """`POST /v1/{Method}`: the request as JSON (or, for an image method, the image as the body and
        the other fields in the query string), the reply as JSON."""
        name = found.group(1)
        method = SERVICE.methods_by_name.get(name)
        if method is None:
            raise HttpError(404, "NOT_FOUND", f"no method {name!r} in {SERVICE.full_name}")
        request_class = getattr(pb, method.input_type.name)
        content_type = call.header("Content-Type").split(";")[0].strip().lower()
        try:
            if name in RAW_IMAGE_METHODS and content_type not in ("application/json", ""):
                request = json_format.ParseDict(
                    query_fields(request_class.DESCRIPTOR, call.query), request_class()
                )
                request.image = call.body
            else:
                request = json_format.ParseDict(_json_body(call), request_class())
        except json_format.ParseError as exc:
            raise HttpError(400, "INVALID_ARGUMENT", f"bad {method.input_type.name}: {exc}") from None
        reply = self._invoke(name, request, call)
        body = json_format.MessageToJson(reply, indent=None).encode()
        return Reply(body, JSON_TYPE, (("Cache-Control", "no-store"),))

    # --- helpers -------------------------------------------------------------------------------------

    def _asset(self, call: Call, name: str) -> Reply:
        asset: Asset | None = self.assets.get(name)
        if asset is None:
            raise HttpError(404, "NOT_FOUND", f"no such file: {name}")
        headers = (("Cache-Control", "no-cache"), ("ETag", asset.etag))
        if call.header("If-None-Match") == asset.etag:
            return Reply(b"", asset.content_type, headers, status=304)
        return Reply(asset.body, asset.content_type, headers)

    def _invoke(self, name: str, request: Message, call: Call, token: str | None = None) -> Any:
        token = token if token is not None else call.token
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            return self._methods[name](request, timeout=_deadline_s(call), metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            kind = next((v for k, v in exc.trailing_metadata() or () if k == ERROR_KIND_KEY), None)
            status = HTTP_STATUS.get(code, 500)
            raise HttpError(status, code.name, exc.details() or code.name, kind) from None


def query_fields(descriptor: Descriptor, query: list[tuple[str, str]]) -> dict[str, Any]:
    """grpc-gateway's query-string mapping: `options.filter.pathPrefix=x` -> {"options": {"filter":
    {"pathPrefix": "x"}}}; a repeated field by repeating its name. Values stay strings (the JSON mapping
    reads numbers, enums and timestamps from strings) except booleans."""
    out: dict[str, Any] = {}
    for dotted, value in query:
        node, fields = out, descriptor
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            field = _field(fields, part) if fields is not None else None
            if field is None:
                raise json_format.ParseError(f"no field {dotted!r}")
            if depth < len(parts) - 1:
                if field.message_type is None or field.is_repeated:
                    raise json_format.ParseError(f"{dotted!r}: {part} is not a single message")
                node = node.setdefault(field.json_name, {})
                fields = field.message_type
                continue
            leaf: Any = _bool(value, dotted) if field.type == FieldDescriptor.TYPE_BOOL else value
            if field.is_repeated:
                node.setdefault(field.json_name, []).append(leaf)
            else:
                node[field.json_name] = leaf
    return out


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name) or next(
        (f for f in descriptor.fields if f.json_name == name), None
    )


def _bool(value: str, name: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise json_format.ParseError(f"{name} must be true or false, got {value!r}")


def _json_body(call: Call) -> dict[str, Any]:
    if not call.body.strip():
        return {}
    try:
        parsed = json.loads(call.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, "INVALID_ARGUMENT", f"the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise HttpError(400, "INVALID_ARGUMENT", "the body must be a JSON object")
    return parsed


def _deadline_s(call: Call) -> float:
    raw = call.header("X-Deadline-Ms")
    try:
        milliseconds = int(raw) if raw else DEFAULT_DEADLINE_MS
    except ValueError:
        raise HttpError(400, "INVALID_ARGUMENT", "X-Deadline-Ms must be a whole number") from None
    return min(max(milliseconds, 1), MAX_DEADLINE_MS) / 1000


def _token(headers: Any) -> str | None:
    """The bearer token of the Authorization header, else of the session cookie."""
    authorization = headers.get("Authorization", "") or ""
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :]
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("Cookie", "") or "")
    except Exception:  # a malformed cookie header is no token, not an error page
        return None
    morsel = cookie.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a page loads its thumbnails over a few connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server_version = "latentdex"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    gateway: Gateway  # set on the subclass made for each server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_HEAD(self) -> None:
        self._send(HttpError(405, "UNIMPLEMENTED", "HEAD is not served"))

    def _serve(self, method: str) -> None:
        try:
            split = urlsplit(self.path)
            body = self._body() if method == "POST" else b""
            call = Call(method, split.path, parse_qsl(split.query), self.headers, body, _token(self.headers))
            self._send(self.gateway.answer(call))
        except HttpError as exc:
            self._send(exc)
        except Exception:
            log.exception("unexpected error answering %s %s", method, self.path)
            self._send(HttpError(500, "INTERNAL", "internal error (logged by the server)"))

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding", "") or "").lower():
            self.close_connection = True
            raise HttpError(411, "INVALID_ARGUMENT", "send a Content-Length, not a chunked body")
        try:
            length = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise HttpError(400, "INVALID_ARGUMENT", "bad Content-Length")
        if length > self.gateway.max_body_bytes:
            self.close_connection = True  # the body stays unread: this connection cannot be reused
            limit = self.gateway.max_body_bytes
            raise HttpError(
                413, "RESOURCE_EXHAUSTED", f"the body is {length} bytes; this server takes at most {limit}"
            )
        return self.rfile.read(length)

    def _send(self, reply: Reply | HttpError) -> None:
        if isinstance(reply, HttpError):
            error = {"code": reply.code, "message": reply.message}
            if reply.kind:
                error["kind"] = reply.kind
            content = json.dumps(error).encode()
            reply = Reply(
                content, "application/json; charset=utf-8", (("Cache-Control", "no-store"),), reply.status
            )
        self.send_response(reply.status)
        for name, value in (*SECURITY_HEADERS.items(), *reply.headers):
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.status not in (204, 304):
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck connection never holds the process's exit
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self.address_family = _family(address[0])
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class HttpServer:
    """The web app and HTTP/JSON API on `host:port` (0: a free port), until `stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        grpc_target: str,
        max_body_bytes: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.gateway = Gateway(grpc_target, max_body_bytes, secure_cookies=tls is not None)
        handler = type("Handler", (_Handler,), {"gateway": self.gateway})
        self._server = _Server((host, port), handler)
        if tls is not None:
            # the handshake then happens in the connection's own thread, not in the accepting one
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="latentdex-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.gateway.close()
