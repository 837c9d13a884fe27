"""``pip install clients/python`` in a fresh venv gives a working client and nothing else.

The client's sources are copied out of the repository first (without build output), because pip
builds a local project in its own folder and would leave a second copy of the package under
``clients/python/build`` for the linters to trip over. The venv's interpreter then runs in
isolated mode (``-I``) from an empty folder, so nothing of the repository or of the test venv
can leak in: what it imports is what pip installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gate_helpers import GateRegistry, RunningGate, served_registry

from registry.demo import SCENARIOS, demo_lines, structure_id

CLIENT_SOURCE = Path(__file__).resolve().parent.parent / "clients" / "python"
SERVER_ONLY = ("sqlalchemy", "psycopg", "orjson", "click", "alembic", "redis", "tqdm")
INSTALL_TIMEOUT = 600

# Run by the venv's interpreter: what got installed, and one real check against the gate.
PROBE = """
import importlib.metadata, importlib.util, json, sys
import permitgate_client
from permitgate_client import Client, Verdict, verify_receipt

dist = importlib.metadata.distribution("permitgate-client")
top_level = (dist.read_text("top_level.txt") or "").split()
record = sorted({f.parts[0] for f in dist.files or ()})
with Client(sys.argv[1], timeout=10) as client:
    decision = client.check_connection(sys.argv[2], utility="water", receipt=True)
    keyset = client.keys()
verified = verify_receipt(decision.receipt, keyset)
print(json.dumps({
    "module": permitgate_client.__file__,
    "server_only_importable": [
        name for name in sys.argv[3].split(",") if importlib.util.find_spec(name) is not None
    ],
    "top_level": top_level,
    "record_roots": record,
    "requires": sorted(dist.requires or []),
    "verdict": decision.verdict.value,
    "is_verdict": isinstance(decision.verdict, Verdict),
    "receipt_decision_id": verified.receipt.decision_id == decision.decision_id,
    "distributions": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
}))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GateRegistry, RunningGate]]:
    with served_registry(tmp_path_factory.mktemp("install"), demo_lines(len(SCENARIOS))) as served:
        yield served


def _clean_env() -> dict[str, str]:
    """This process's environment without what would point pip or Python at the test venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE"}
    return {key: value for key, value in os.environ.items() if key not in drop}


@pytest.mark.slow
def test_the_client_installs_alone(
    tmp_path: Path, served: tuple[GateRegistry, RunningGate]
) -> None:
    source = tmp_path / "client-source"
    shutil.copytree(
        CLIENT_SOURCE,
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = _clean_env()
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    made = time.monotonic()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    installed = time.monotonic()
    assert install.returncode == 0, install.stdout + install.stderr
    print(
        f"\nfresh venv {made - started:.1f} s, pip install clients/python {installed - made:.1f} s"
    )

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    probe = subprocess.run(
        [str(python), "-I", "-c", PROBE, served[1].target, structure_id(1), ",".join(SERVER_ONLY)],
        capture_output=True,
        text=True,
        env=env,
        cwd=empty,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert Path(seen["module"]).is_relative_to(venv)
    assert seen["server_only_importable"] == []
    assert seen["top_level"] == ["permitgate_client"]
    assert [root for root in seen["record_roots"] if not root.endswith(".dist-info")] == [
        "permitgate_client"
    ]
    assert [r.split(">")[0].split("<")[0] for r in seen["requires"]] == [
        "cryptography",
        "grpcio",
        "protobuf",
    ]
    assert seen["verdict"] == "DENY" and seen["is_verdict"] and seen["receipt_decision_id"]
    assert not {"permitgate", "sqlalchemy", "psycopg", "psycopg-binary"} & set(
        seen["distributions"]
    )
