"""The smallest useful Python component: a greeting for every request.

Built by `ops/build-guests` with componentize-py against the wasi:http
0.2 `proxy` world (the WIT of the node's own wasmtime-wasi-http):

    componentize-py -d WIT -w wasi:http/proxy@0.2.12 componentize -p . app -o py-hello.wasm

then deployed like any component: `edgectl deploy APP py-hello.wasm`.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

GREETING = b"Hello from the edge (Python)!\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(
            Fields.from_list(
                [
                    ("content-type", b"text/plain; charset=utf-8"),
                    ("content-length", str(len(GREETING)).encode()),
                ]
            )
        )
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(GREETING)
        OutgoingBody.finish(body, None)
