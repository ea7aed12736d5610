"""A gRPC C-core client (grpcio) for readygrpc's interoperability tests.

Calls the service readyconn.interop.Echo (see grpc_echo_server.py) over TLS
with identity (de)serializers, so no generated code is needed: Unary with
messages of several sizes, then one Stream call that sends messages of
several sizes and reads the answer to each before sending the next. Every
answer must be PREFIX + what was sent. Each RPC has its own deadline. Prints
one "ok ..." line per check and exits 0, or exits 1 with the reason on
stderr.

usage: grpc_echo_client.py TARGET CA_PEM PREFIX [CERT_PEM KEY_PEM]

The server certificate is checked for the name "localhost".
"""

import os
import sys

import grpc

RPC_TIMEOUT = 60  # seconds, per RPC
SIZES = [0, 1, 1000, 16 << 10, 100 << 10, 1 << 20]


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def check(what, want, got):
    if got != want:
        fail("%s: got %d bytes %r..., want %d bytes %r..." % (what, len(got), got[:40], len(want), want[:40]))


def main():
    target, ca_file, prefix = sys.argv[1:4]
    prefix = prefix.encode()
    cert = key = None
    if len(sys.argv) > 4:
        with open(sys.argv[4], "rb") as f:
            cert = f.read()
        with open(sys.argv[5], "rb") as f:
            key = f.read()
    with open(ca_file, "rb") as f:
        ca = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(target, creds, options=options) as channel:
        unary = channel.unary_unary("/readyconn.interop.Echo/Unary")
        for n in SIZES:
            msg = os.urandom(n)
            check("Unary %d bytes" % n, prefix + msg, unary(msg, timeout=RPC_TIMEOUT))
            print("ok unary %d" % n, flush=True)

        stream = channel.stream_stream("/readyconn.interop.Echo/Stream")
        sent = []

        def requests():
            for n in SIZES + SIZES[::-1]:
                msg = os.urandom(n)
                sent.append(msg)
                yield msg

        count = 0
        for got in stream(requests(), timeout=RPC_TIMEOUT):
            check("Stream message %d" % count, prefix + sent[count], got)
            count += 1
        if count != 2 * len(SIZES):
            fail("Stream: %d answers, want %d" % (count, 2 * len(SIZES)))
        print("ok stream %d messages" % count, flush=True)


if __name__ == "__main__":
    main()
