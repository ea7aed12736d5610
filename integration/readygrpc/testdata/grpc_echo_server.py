"""A gRPC C-core server (grpcio) for readygrpc's interoperability tests.

Serves the service readyconn.interop.Echo over TLS with generic handlers and
identity (de)serializers, so no generated code is needed:

  Unary  (unary-unary):   answers PREFIX + request
  Stream (stream-stream): answers every request message with PREFIX + message

where PREFIX is b"py:" + the common name of the client certificate (empty
without one) + b":". It listens on 127.0.0.1 on a free port, prints
"PORT <n>" on stdout once serving, and stops gracefully when its stdin is
closed.

usage: grpc_echo_server.py CA_PEM CERT_PEM KEY_PEM [--require-client-cert]
"""

import sys
from concurrent import futures

import grpc


def prefix(context):
    cn = context.auth_context().get("x509_common_name", [b""])[0]
    return b"py:" + cn + b":"


def unary(request, context):
    return prefix(context) + request


def stream(requests, context):
    p = prefix(context)
    for message in requests:
        yield p + message


def main():
    ca_file, cert_file, key_file = sys.argv[1:4]
    require_client_cert = "--require-client-cert" in sys.argv[4:]
    with open(ca_file, "rb") as f:
        ca = f.read()
    with open(cert_file, "rb") as f:
        cert = f.read()
    with open(key_file, "rb") as f:
        key = f.read()

    handler = grpc.method_handlers_generic_handler(
        "readyconn.interop.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca if require_client_cert else None,
        require_client_auth=require_client_cert,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    if port == 0:
        sys.exit("cannot listen on 127.0.0.1")
    server.start()
    print("PORT %d" % port, flush=True)

    sys.stdin.buffer.read()  # until the test closes stdin
    server.stop(grace=5).wait()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
