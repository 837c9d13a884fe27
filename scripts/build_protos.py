"""Generate the gRPC Python code in permitgate_client/v1 from protos/, or check it is current.

The generated modules are committed so that an install needs no code generator; `make test`
runs this with --check, which regenerates into a temporary folder and fails when anything
differs. Run `make protos` after editing a .proto file. Never edit the generated files.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python"
PACKAGE = "permitgate_client"
# protos/permitgate/v1/x.proto is compiled as permitgate_client/v1/x.proto, so the generated
# modules are permitgate_client.v1.x_pb2 (inside the client distribution), while the proto
# package, and so every wire name, stays permitgate.v1.
PATTERNS = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    sources = sorted(PROTOS.rglob("*.proto"))
    if not sources:
        return []
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PACKAGE}={PROTOS / 'permitgate'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = (out / PACKAGE).rglob("*")
    return sorted(p.relative_to(out) for p in generated if p.name.endswith(PATTERNS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    check = parser.parse_args().check
    if not check:
        for path in generate(OUT):
            print(f"generated {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            p
            for p in fresh
            if not (OUT / p).exists() or not filecmp.cmp(Path(tmp) / p, OUT / p, shallow=False)
        ]
    committed = {
        p.relative_to(OUT) for p in (OUT / PACKAGE).rglob("*") if p.name.endswith(PATTERNS)
    }
    orphans = sorted(committed - set(fresh))
    for path in stale:
        print(f"stale: {path} (run 'make protos')", file=sys.stderr)
    for path in orphans:
        print(f"no .proto for: {path}", file=sys.stderr)
    if stale or orphans:
        return 1
    print(f"generated code is current ({len(fresh)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
