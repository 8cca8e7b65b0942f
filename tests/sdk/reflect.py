#!/usr/bin/env python3
"""Asks the hub's gRPC reflection what it serves, as grpcio-reflection's clients (and grpcurl)
do: over grpc.reflection.v1alpha, with the user's certificate from a tetherctl config.
Prints one service name per line, then the methods of tether.v1.HubApiService as the
descriptor the hub returns for it describes them.

Usage: reflect.py CONFIG
"""

from __future__ import annotations

import sys

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import tether


def main() -> int:
    config = tether.load_config(sys.argv[1])
    creds = grpc.ssl_channel_credentials(
        root_certificates=config["ca"].encode(),
        private_key=config["key"].encode(),
        certificate_chain=config["cert"].encode(),
    )
    with grpc.secure_channel(config["hub"], creds) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="tether.v1.HubApiService"),
        ]
        answers = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
    for s in answers[0].list_services_response.service:
        print(s.name)
    for raw in answers[1].file_descriptor_response.file_descriptor_proto:
        f = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for svc in f.service:
            if svc.name == "HubApiService":
                for m in svc.method:
                    print(f"{f.package}.{svc.name}/{m.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
