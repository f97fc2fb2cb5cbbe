"""A small JSON API in Python, with the same routes and answers as
`examples/js-api`:

    GET  /              {"service": "py-api", "routes": [...]}
    GET  /hello/NAME    {"hello": "NAME"}        (percent-decoded)
    POST /echo          {"received": BODY}       (BODY: the request's JSON)
    otherwise           404 / 405 / 400 / 413 with {"error": "..."}

Built by `ops/build-guests` with componentize-py (see `examples/py-hello`).
"""

import json
from urllib.parse import unquote

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

SERVICE = "py-api"
ROUTES = ["GET /", "GET /hello/NAME", "POST /echo"]
MAX_BODY = 64 << 10
# blocking-write-and-flush takes at most 4096 bytes per call.
WRITE_CHUNK = 4096


class TooLarge(Exception):
    pass


def read_body(request: IncomingRequest) -> bytes:
    data = bytearray()
    incoming = request.consume()
    with incoming.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(16 << 10)
            except Err as err:
                if isinstance(err.value, StreamError_Closed):
                    return bytes(data)
                raise
            if len(data) > MAX_BODY:
                raise TooLarge()


def route(request: IncomingRequest):
    method = request.method()
    path = (request.path_with_query() or "/").split("?", 1)[0]
    if path == "/":
        if not isinstance(method, Method_Get):
            return 405, {"error": "method not allowed"}
        return 200, {"service": SERVICE, "routes": ROUTES}
    if path.startswith("/hello/") and "/" not in path[len("/hello/"):]:
        if not isinstance(method, Method_Get):
            return 405, {"error": "method not allowed"}
        return 200, {"hello": unquote(path[len("/hello/"):])}
    if path == "/echo":
        if not isinstance(method, Method_Post):
            return 405, {"error": "method not allowed"}
        try:
            raw = read_body(request)
        except TooLarge:
            return 413, {"error": f"body over {MAX_BODY} bytes"}
        try:
            return 200, {"received": json.loads(raw)}
        except ValueError:
            return 400, {"error": "invalid JSON body"}
    return 404, {"error": "not found"}


def respond(response_out: ResponseOutparam, status: int, document) -> None:
    payload = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    response = OutgoingResponse(
        Fields.from_list(
            [
                ("content-type", b"application/json"),
                ("content-length", str(len(payload)).encode()),
            ]
        )
    )
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        for start in range(0, len(payload), WRITE_CHUNK):
            stream.blocking_write_and_flush(payload[start : start + WRITE_CHUNK])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, document = route(request)
        except Exception as err:  # the response must always be set
            print(f"py-api: {type(err).__name__}: {err}")
            status, document = 500, {"error": "internal error"}
        respond(response_out, status, document)
