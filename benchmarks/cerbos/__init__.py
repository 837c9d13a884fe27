"""The Cerbos PDP as the benchmark's Go policy engine: its binary, its configuration, its requests.

The binary comes from the npm package ``@cerbos/cerbos-linux-x64`` (pinned: ``VERSION``),
fetched once with ``npm pack`` into a cache directory and unpacked there; it is never committed.
The policy (``policies/structure.yaml``) is Art. 23's permanent-connection rule over resource
attributes built from the same registry records the gate answers from (``resource_of``), so
both engines decide the same question on the same data; the harness checks that Cerbos allows
exactly the structures the gate answers ALLOW.

Requests are built with the protobuf classes of the Cerbos Python SDK (PyPI ``cerbos``, in the
``bench`` extra), and sent either with a real gRPC call (``check_resources``, to check the
answers) or as bytes by h2load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import grpc
from cerbos.effect.v1 import effect_pb2
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.response.v1 import response_pb2
from google.protobuf import struct_pb2

__all__ = [
    "ACTION",
    "CHECK_RESOURCES",
    "MAX_RESOURCES",
    "PACKAGE",
    "VERSION",
    "allowed",
    "check_request",
    "check_resources",
    "ensure_binary",
    "resource_of",
    "write_config",
]

VERSION = "0.55.0"
PACKAGE = "@cerbos/cerbos-linux-x64"
CHECK_RESOURCES = "/cerbos.svc.v1.CerbosService/CheckResources"
ACTION = "connect_permanent"
MAX_RESOURCES = 500
"""The most resources Cerbos accepts in one CheckResources (``maxResourcesPerRequest``)."""
POLICIES = Path(__file__).resolve().parent / "policies"


def ensure_binary(cache: Path) -> Path:
    """The cerbos binary of ``VERSION`` in ``cache``, fetched with ``npm pack`` when absent."""
    binary = cache / f"cerbos-{VERSION}" / "cerbos"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed to fetch {PACKAGE}@{VERSION} (apt-get install npm)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", tmp],
            check=True,
            capture_output=True,
        )
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            member = archive.getmember("package/cerbos-linux-x64")
            source = archive.extractfile(member)
            if source is None:
                raise RuntimeError(f"{tarball.name} holds no cerbos binary")
            unpacked = Path(tmp) / "cerbos"
            with source, unpacked.open("wb") as out:
                shutil.copyfileobj(source, out)
        unpacked.chmod(0o755)
        binary.parent.mkdir(exist_ok=True)
        os.replace(unpacked, binary)
    return binary


def write_config(directory: Path, grpc_port: int, http_port: int) -> Path:
    """A Cerbos configuration: the policy directory, both listeners on loopback, no audit log,
    no telemetry, and room for ``MAX_RESOURCES`` resources a request (the default is 50)."""
    config = directory / "cerbos.yaml"
    config.write_text(
        f"""\
server:
  grpcListenAddr: "127.0.0.1:{grpc_port}"
  httpListenAddr: "127.0.0.1:{http_port}"
  requestLimits:
    maxActionsPerResource: 50
    maxResourcesPerRequest: {MAX_RESOURCES}
storage:
  driver: disk
  disk:
    directory: "{POLICIES}"
    watchForChanges: false
audit:
  enabled: false
telemetry:
  disabled: true
"""
    )
    return config


def resource_of(records: list[dict[str, Any]]) -> engine_pb2.Resource:
    """A structure's registry records (its structure line, permits, cases) as a Cerbos resource."""
    structure = next(r for r in records if r["type"] == "structure")
    attr: dict[str, Any] = {
        "area": structure["area"],
        "permits": [
            {k: p[k] for k in ("kind", "status", "issued", "expires") if k in p}
            for p in records
            if p["type"] == "permit"
        ],
        "cases": [{"stage": c["stage"]} for c in records if c["type"] == "case"],
    }
    resource = engine_pb2.Resource(kind="structure", id=structure["id"])
    for key, value in attr.items():
        resource.attr[key].CopyFrom(_value(value))
    return resource


def _value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if isinstance(value, list):
        out.list_value.SetInParent()  # an empty list stays a list, not null
        out.list_value.extend(value)
    elif isinstance(value, dict):
        out.struct_value.update(value)
    else:
        out.string_value = value
    return out


def check_request(resources: list[engine_pb2.Resource]) -> request_pb2.CheckResourcesRequest:
    """Can a water utility connect each of ``resources`` permanently?"""
    request = request_pb2.CheckResourcesRequest(
        request_id="bench",
        principal=engine_pb2.Principal(id="water-utility", roles=["utility"]),
    )
    for resource in resources:
        entry = request.resources.add(actions=[ACTION])
        entry.resource.CopyFrom(resource)
    return request


def check_resources(
    target: str, request: request_pb2.CheckResourcesRequest
) -> response_pb2.CheckResourcesResponse:
    """One real CheckResources call (raises ``grpc.RpcError`` on an error status)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            CHECK_RESOURCES,
            request_serializer=request_pb2.CheckResourcesRequest.SerializeToString,
            response_deserializer=response_pb2.CheckResourcesResponse.FromString,
        )
        response: response_pb2.CheckResourcesResponse = call(request, timeout=30)
        return response


def allowed(response: response_pb2.CheckResourcesResponse) -> dict[str, bool]:
    """Resource id -> whether Cerbos allowed ``ACTION``."""
    return {
        result.resource.id: result.actions[ACTION] == effect_pb2.EFFECT_ALLOW
        for result in response.results
    }
