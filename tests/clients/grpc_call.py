#!/usr/bin/env python3
"""One unary gRPC call through a real gRPC C-core client (Python grpcio).

Usage: grpc_call.py SOCKET AUTHORITY_MODE METHOD REQUEST_HEX

AUTHORITY_MODE is how the client fills `:authority`, as the clients in the
field do:
  default  - grpcio's own choice for unix: targets (the percent-encoded
             socket path, e.g. %2Ftmp%2Fx%2Fpullgate.sock)
  path     - the raw socket path, as kubelet and crictl before 1.31 send it
  localhost- "localhost", as kubelet and crictl 1.31 and later send it

Prints one JSON object: {"code": "OK"|..., "details": str, "response_hex": str}.
The request and response are raw protobuf bytes, so this script needs no
generated stubs.
"""
import json
import sys

import grpc


def main() -> int:
    socket, mode, method, request_hex = sys.argv[1:5]
    options = []
    if mode == "path":
        options.append(("grpc.default_authority", socket))
    elif mode == "localhost":
        options.append(("grpc.default_authority", "localhost"))
    elif mode != "default":
        raise SystemExit(f"unknown authority mode {mode!r}")
    with grpc.insecure_channel(f"unix:{socket}", options=options) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            response = call(bytes.fromhex(request_hex), timeout=60)
            out = {"code": "OK", "details": "", "response_hex": response.hex()}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details() or "", "response_hex": ""}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
