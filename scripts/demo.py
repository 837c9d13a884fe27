"""`make demo`: build a demo registry on the embedded default (SQLite), verify it, and serve it:
the registry service and the gate, as two processes with two key directories; then let two
departments and the working group write and read as themselves (``demo_departments``).

Everything lives in ./demo and is rebuilt on each run: the database, the registry's keys
(demo/registry-keys: its private key, with the registry service alone) and state, the gate's
keys (demo/gate-keys: a copy of registry.pub and the gate's own key, made at its first start)
and state, the data file. The registry service cosigns the newest head every few seconds, so the
gate's data stays provably fresh; stop it and the gate answers REVIEW once its data ages. Before
serving, the demo prints `permitgate check ...` lines to try from another terminal, one for each
rule of DOMAIN.md; once both serve, it runs the departments' story (a case found, referred,
decided and answered; a structure turning from ALLOW to DENY at the gate; a notice in the
working group's inbox; the page, opened in headless Chromium when there is one). Ctrl-C stops
both.

The addresses (PERMITGATE_DEMO_LISTEN for the gate, default 127.0.0.1:50051,
PERMITGATE_DEMO_REGISTRY_LISTEN for the registry service, default 127.0.0.1:50060,
PERMITGATE_DEMO_DEPARTMENTS_LISTEN for its departments' port, default 127.0.0.1:50061, and
PERMITGATE_DEMO_WEB_LISTEN for the working group's page, default 127.0.0.1:8443) are checked
before anything is built; a step that fails has printed its one line already, and the demo
exits with its status.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo_departments import Paths, enrol, scenario
from permitgate_client import Client, GateError

from registry.demo import SCENARIOS, structure_id
from registry.signing import ensure_signer
from server.listen import ListenError, check_free, parse_listen
from server.receipts import DEFAULT_GATE_NAME, GATE_ROLE

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
STRUCTURES = 3000
LISTEN = os.environ.get("PERMITGATE_DEMO_LISTEN", "127.0.0.1:50051")
REGISTRY_LISTEN = os.environ.get("PERMITGATE_DEMO_REGISTRY_LISTEN", "127.0.0.1:50060")
DEPARTMENTS_LISTEN = os.environ.get("PERMITGATE_DEMO_DEPARTMENTS_LISTEN", "127.0.0.1:50061")
WEB_LISTEN = os.environ.get("PERMITGATE_DEMO_WEB_LISTEN", "127.0.0.1:8443")
REGISTRY_KEYS = DEMO / "registry-keys"
GATE_KEYS = DEMO / "gate-keys"
HEARTBEAT = 5


def run(*args: str, stdout: Path | None = None) -> None:
    shown = " ".join(shlex.quote(a) for a in ("permitgate", *args))
    print(f"$ {shown}" + (f" > {stdout.relative_to(ROOT)}" if stdout else ""), flush=True)
    if stdout is None:
        subprocess.run([PERMITGATE, *args], check=True, cwd=ROOT, env=ENV)
    else:
        with stdout.open("wb") as out:
            subprocess.run([PERMITGATE, *args], check=True, cwd=ROOT, env=ENV, stdout=out)


ENV = {
    **os.environ,
    "PERMITGATE_DB": f"sqlite:///{DEMO / 'permitgate.db'}",
    "PERMITGATE_KEYS": str(REGISTRY_KEYS),
}


def try_these() -> list[tuple[str, str]]:
    """(what it shows, command) pairs: every rule, on the structures that show it."""
    by_name = {s.name: structure_id(i) for i, s in enumerate(SCENARIOS)}

    def sid(prefix: str) -> str:
        return next(v for k, v in by_name.items() if k.startswith(prefix))

    until = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT00:00:00Z")
    ok, flagged, pending = sid("urban, every"), sid("urban, stop"), sid("urban, reported")
    revoked = sid("urban, construction planning permit revoked")
    suspended = sid("urban, construction planning permit suspended")
    building, other_use = sid("urban, under"), sid("urban, property")
    receipt, keyset = "demo/receipt.json", "demo/keyset.json"
    lines = [
        (
            "ALLOW: urban, all three planning permits in force (Art. 23)",
            f"check connection {ok} --utility water",
        ),
        (
            "DENY PERMIT_REVOKED",
            f"check connection {revoked} --utility power",
        ),
        (
            "DENY PERMIT_SUSPENDED",
            f"check connection {suspended} --utility gas",
        ),
        (
            "DENY PERMIT_EXPIRED",
            f"check connection {sid('urban, construction planning permit expired')} --utility heat",
        ),
        (
            "DENY MISSING_PERMIT (no land certificate)",
            f"check connection {sid('urban, no land')} --utility water",
        ),
        (
            "DENY MISSING_PERMIT (permit not yet issued)",
            f"check connection {sid('urban, land use')} --utility water",
        ),
        (
            "ALLOW_TEMPORARY TEMPORARY_ONLY (temporary planning permit)",
            f"check connection {sid('urban, temporary')} --utility power",
        ),
        (
            "ALLOW_TEMPORARY: construction-period supply, with a signed receipt",
            f"check connection {building} --utility water --kind temporary --until {until} "
            f"--receipt {receipt}",
        ),
        ("  ... keep the gate's public keys (a KeySet) for later", f"keys > {keyset}"),
        (
            "  ... and verify the receipt offline, with no gate",
            f"receipt verify {receipt} --keyset {keyset}",
        ),
        (
            "  ... or with the registry's public key alone (it vouches for the gate's key)",
            f"receipt verify {receipt} --registry-key demo/gate-keys/registry.pub",
        ),
        ("DENY STRUCTURE_FLAGGED (stop order)", f"check connection {flagged} --utility water"),
        ("REVIEW CASE_PENDING (reported lead)", f"check connection {pending} --utility water"),
        (
            "ALLOW: a closed case no longer blocks",
            f"check connection {sid('urban, closed')} --utility water",
        ),
        (
            "ALLOW: village, rural planning permit",
            f"check connection {sid('village, rural')} --utility water",
        ),
        ("DENY: village without one", f"check connection {sid('village, no')} --utility water"),
        ("DENY NOT_IN_REGISTRY", "check connection 110228-9999-9999 --utility water"),
        ("ALLOW: initial registration (Art. 11)", f"check registration {ok} --kind initial"),
        ("DENY: transfer of a flagged structure", f"check registration {flagged} --kind transfer"),
        (
            "NOTIFY USE_MISMATCH: tax office, declared use differs (Art. 13)",
            f"check premises {other_use} --office tax --use restaurant --application A-1",
        ),
        (
            "DENY USE_MISMATCH: fire department, same premises",
            f"check premises {other_use} --office fire --use restaurant",
        ),
        (
            "NOTIFY STRUCTURE_FLAGGED: market regulation never blocks",
            f"check premises {flagged} --office market_regulation --use residential "
            "--application A-2",
        ),
        ("the notifications recorded for the working group", "registry notifications"),
    ]
    return lines


def main() -> int:
    for variable, address, example in (
        ("PERMITGATE_DEMO_LISTEN", LISTEN, "127.0.0.1:50052"),
        ("PERMITGATE_DEMO_REGISTRY_LISTEN", REGISTRY_LISTEN, "127.0.0.1:50062"),
        ("PERMITGATE_DEMO_DEPARTMENTS_LISTEN", DEPARTMENTS_LISTEN, "127.0.0.1:50063"),
        ("PERMITGATE_DEMO_WEB_LISTEN", WEB_LISTEN, "127.0.0.1:8444"),
    ):
        try:
            check_free(parse_listen(address))
        except ListenError as exc:
            listens = {
                "PERMITGATE_DEMO_LISTEN": "the demo listens",
                "PERMITGATE_DEMO_REGISTRY_LISTEN": "the demo's registry service listens",
                "PERMITGATE_DEMO_DEPARTMENTS_LISTEN": "the departments call",
                "PERMITGATE_DEMO_WEB_LISTEN": "the working group's page listens",
            }[variable]
            print(
                f"permitgate: {exc} ({listens} on {variable}, e.g. {variable}={example} make demo)",
                file=sys.stderr,
            )
            return 2
    try:
        build()
    except subprocess.CalledProcessError as exc:  # the command has said why, in one line
        return exc.returncode
    except KeyboardInterrupt:
        return 130
    return serve()


def build() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    data = DEMO / "registry.jsonl"
    run("registry", "init")
    run("registry", "demo-data", "--structures", str(STRUCTURES), stdout=data)
    run("registry", "import", str(data.relative_to(ROOT)))
    run("registry", "verify")
    run("registry", "checkpoint")
    GATE_KEYS.mkdir(mode=0o700)
    shutil.copyfile(REGISTRY_KEYS / "registry.pub", GATE_KEYS / "registry.pub")
    print(f"$ cp {_shown(REGISTRY_KEYS / 'registry.pub')} {_shown(GATE_KEYS)}/", flush=True)
    # The gate's own key, made now (a gate makes it at its first start otherwise), so that the
    # registry can vouch for it: receipts then verify with registry.pub alone.
    ensure_signer(GATE_KEYS, GATE_ROLE, DEFAULT_GATE_NAME)
    run("registry", "vouch", _shown(GATE_KEYS / f"{GATE_ROLE}.pub"))
    enrol(PATHS, run)


PATHS = Paths(ROOT, DEMO, PERMITGATE)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT))


def serve() -> int:
    """Print what to try, then run the registry service and the gate until Ctrl-C (or until one
    of them stops); 0, or the status of the one that stopped by itself."""
    env_line = (
        f"export PERMITGATE_DB={ENV['PERMITGATE_DB']} PERMITGATE_KEYS={ENV['PERMITGATE_KEYS']}"
    )
    target = "" if LISTEN == "127.0.0.1:50051" else f" --target {LISTEN}"
    print("\nThe registry service and the gate start below. From another terminal in this folder,")
    print("try:\n")
    print(f"  {env_line}")
    for what, command in try_these():
        if command.startswith(("check", "keys")):  # these talk to the gate
            command, redirect, out = command.partition(" > ")
            command += target + redirect + out
        print(f"  # {what}\n  .venv/bin/permitgate {command}")
    print(
        f"  # the newest head, cosigned by the registry service every {HEARTBEAT} s "
        "(the last line's time)\n  .venv/bin/permitgate registry checkpoint"
    )
    print("\nStop both with Ctrl-C.\n", flush=True)
    commands = {
        "registry service": [
            "registry",
            "serve",
            "--listen",
            REGISTRY_LISTEN,
            "--keys",
            _shown(REGISTRY_KEYS),
            "--state",
            _shown(DEMO / "registry-state"),
            "--heartbeat",
            str(HEARTBEAT),
            "--tls-cert",
            _shown(PATHS.pki / "server.pem"),
            "--tls-key",
            _shown(PATHS.pki / "server.key"),
            "--client-ca",
            _shown(PATHS.pki / "ca.pem"),
            "--departments-listen",
            DEPARTMENTS_LISTEN,
            "--web-listen",
            WEB_LISTEN,
        ],
        "gate": [
            "serve",
            "--listen",
            LISTEN,
            "--keys",
            _shown(GATE_KEYS),
            "--state",
            _shown(DEMO / "gate-state"),
        ],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        for name, args in commands.items():
            print("$ " + " ".join(shlex.quote(a) for a in ("permitgate", *args)), flush=True)
            processes[name] = subprocess.Popen([PERMITGATE, *args], cwd=ROOT, env=ENV)
        departments_story(processes)
        while not stopping and all(p.poll() is None for p in processes.values()):
            time.sleep(0.2)
    except KeyboardInterrupt:  # the terminal sent SIGINT to both of them as well
        pass
    return _stop_all(processes, stopping)


def departments_story(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Once the gate allows the structure the story starts on, run it; a step that fails is
    printed, and the services go on serving."""
    every = next(i for i, s in enumerate(SCENARIOS) if s.name.startswith("urban, every"))
    found, own = structure_id(every), structure_id(every + len(SCENARIOS))
    other_use = next(
        structure_id(i) for i, s in enumerate(SCENARIOS) if s.name.startswith("urban, property")
    )
    client = Client(LISTEN, timeout=2.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and all(p.poll() is None for p in processes.values()):
        try:
            if client.check_connection(found, utility="water").verdict == "ALLOW":
                break
        except GateError:
            pass
        time.sleep(0.2)
    else:
        print("\nthe gate did not start allowing checks within 60 s: no departments' story")
        return
    try:
        scenario(
            PATHS,
            gate=LISTEN,
            departments=DEPARTMENTS_LISTEN,
            web=WEB_LISTEN,
            allowed=(found, own),
            other_use=other_use,
        )
    except (RuntimeError, GateError, subprocess.SubprocessError) as exc:
        print(f"\nthe departments' story stopped: {exc}")
    print("\nThe services go on serving; stop both with Ctrl-C.\n", flush=True)


def _stop_all(processes: dict[str, subprocess.Popen[bytes]], asked: bool) -> int:
    """Stop every process still running; the status of one that ended by itself, else 0."""
    ended = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    failed = [code for code in ended.values() if code not in (0, -signal.SIGINT)]
    if failed and not asked:
        return failed[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
