"""Server reflection under both names: ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection serves only v1alpha (grpc/grpc#38576), while current tools ask for v1 first.
The two protocols are the same messages, field for field, under two package names, so one
servicer answers both: its handler is registered a second time under the v1 method name, and
the v1 file descriptor (the v1alpha file renamed) joins the descriptor pool, so reflection can
describe itself by either name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from server.guard import GuardedServer

__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "enable_reflection"]

V1ALPHA_SERVICE_NAME: Final[str] = reflection.SERVICE_NAME
V1_PACKAGE: Final = "grpc.reflection.v1"
V1_SERVICE_NAME: Final = f"{V1_PACKAGE}.ServerReflection"
V1_FILE: Final = "grpc/reflection/v1/reflection.proto"


def _renamed(type_name: str, old: str, new: str) -> str:
    return type_name.replace(f".{old}.", f".{new}.", 1)


def add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Add ``grpc/reflection/v1/reflection.proto`` to ``pool`` (once): v1alpha's, renamed."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = proto.package
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # a message field (scalars have none)
                field.type_name = _renamed(field.type_name, old, V1_PACKAGE)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type, old, V1_PACKAGE)
            method.output_type = _renamed(method.output_type, old, V1_PACKAGE)
    pool.AddSerializedFile(proto.SerializeToString())


def enable_reflection(service_names: Iterable[str], server: GuardedServer) -> None:
    """Serve reflection for ``service_names`` (and for itself) under both protocol versions."""
    pool = descriptor_pool.Default()
    add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1: dict[str, grpc.RpcMethodHandler] = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_registered_method_handlers(V1_SERVICE_NAME, v1)
