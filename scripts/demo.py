"""`make demo`: build a demo registry on the embedded default (SQLite), verify it, and serve it.

Everything lives in ./demo (database, keys, data file) and is rebuilt on each run. Before
serving, it prints `permitgate check ...` lines to try from another terminal, one for each rule
of DOMAIN.md. Stop the gate with Ctrl-C.

The address (PERMITGATE_DEMO_LISTEN, default 127.0.0.1:50051) is checked before anything is
built; a step that fails has printed its one line already, and the demo exits with its status.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry.demo import SCENARIOS, structure_id
from server.listen import ListenError, check_free, parse_listen

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
STRUCTURES = 3000
LISTEN = os.environ.get("PERMITGATE_DEMO_LISTEN", "127.0.0.1:50051")


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
    "PERMITGATE_KEYS": str(DEMO / "keys"),
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
    try:
        check_free(parse_listen(LISTEN))
    except ListenError as exc:
        print(
            f"permitgate: {exc} (the demo listens on PERMITGATE_DEMO_LISTEN, e.g. "
            "PERMITGATE_DEMO_LISTEN=127.0.0.1:50052 make demo)",
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


def serve() -> int:
    """Print what to try, then serve until Ctrl-C; the gate's exit status."""
    env_line = (
        f"export PERMITGATE_DB={ENV['PERMITGATE_DB']} PERMITGATE_KEYS={ENV['PERMITGATE_KEYS']}"
    )
    target = "" if LISTEN == "127.0.0.1:50051" else f" --target {LISTEN}"
    print("\nThe gate starts below. From another terminal in this folder, try:\n")
    print(f"  {env_line}")
    for what, command in try_these():
        if command.startswith(("check", "keys")):  # these talk to the gate
            command, redirect, out = command.partition(" > ")
            command += target + redirect + out
        print(f"  # {what}\n  .venv/bin/permitgate {command}")
    print("\nStop the gate with Ctrl-C.\n", flush=True)
    try:
        run("serve", "--listen", LISTEN)
    except KeyboardInterrupt:
        pass
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
