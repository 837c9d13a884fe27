"""What a new user runs into, on every command: one plain line, exit status 2, no traceback.

Each case runs the real command (in-process through click's runner, where an uncaught exception
fails the test, or as a real process, where stderr must hold exactly one line) against a real
SQLite file or the real PostgreSQL server: a database that does not exist, a port with nothing
listening, a URL of another kind, a folder that does not exist, a second writer, a registry with
rows deleted behind its back, a bad ``--listen``, a port in use, and ``make demo``'s script.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import Result
from permitgate_client import CONNECTION_KINDS, OFFICES, REGISTRATION_KINDS, UTILITIES
from processes import free_port
from registry_support import EXAMPLE_LINES, S1, Registry, invoke, jsonl, structure
from sqlalchemy.engine import make_url

from permitgate.check_cli import check
from registry import storage, writer
from server.listen import ListenAddress, bind_failure

ROOT = Path(__file__).resolve().parent.parent
PERMITGATE = str(Path(sys.executable).with_name("permitgate"))
REPAIR = (
    "rows were deleted or added outside permitgate; run 'permitgate registry verify' and "
    "restore the database from a backup"
)

# Every command that opens the database, with what else it needs ({keys}, {file}: filled in).
COMMANDS = {
    "init": ["registry", "init", "--keys", "{keys}"],
    "import": ["registry", "import", "{file}", "--keys", "{keys}"],
    "export": ["registry", "export"],
    "checkpoint": ["registry", "checkpoint"],
    "status": ["registry", "status", S1, "--keys", "{keys}"],
    "verify": ["registry", "verify", "--keys", "{keys}"],
    "refresh": ["registry", "refresh", "--keys", "{keys}"],
    "notifications": ["registry", "notifications"],
    "serve": ["serve", "--keys", "{keys}", "--listen", "127.0.0.1:0"],
}
READ_ONLY = ("export", "checkpoint", "status", "verify", "notifications")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A registry key (made for a registry elsewhere), so commands get as far as the database."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    made = invoke(["registry", "init", "--db", other, "--keys", str(tmp_path / "keys")])
    assert made.exit_code == 0, made.output
    return tmp_path / "keys"


@pytest.fixture
def sqlite_reg(tmp_path: Path) -> Iterator[Registry]:
    """An initialised registry in a SQLite file (where the file and its lock are under test)."""
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry-keys", tmp_path)
    reg.init()
    try:
        yield reg
    finally:
        reg.close()


def command(name: str, db: str, keys: Path, tmp_path: Path) -> list[str]:
    data = tmp_path / "data.jsonl"
    data.write_text(jsonl(EXAMPLE_LINES))
    filled = [a.format(keys=keys, file=data) for a in COMMANDS[name]]
    return [*filled, "--db", db]


def run(args: list[str], **env: str | None) -> Result | subprocess.CompletedProcess[str]:
    """``serve`` as a real process (it must stop by itself); the rest in-process."""
    if args[0] == "serve":
        return subprocess.run(
            [PERMITGATE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **{k: v for k, v in env.items() if v is not None}},
        )
    return invoke(args, **env)


def one_line(result: Result | subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed (exit 2, nothing on stdout, no traceback)."""
    if isinstance(result, Result):
        code, out, err = result.exit_code, result.stdout, result.stderr
    else:
        code, out, err = result.returncode, result.stdout, result.stderr
    assert "Traceback" not in err, err
    assert (code, out) == (2, ""), (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("permitgate: "), err
    return lines[0].removeprefix("permitgate: ")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_postgresql_database_that_does_not_exist(
    name: str, keys: Path, tmp_path: Path, pg_database: str
) -> None:
    server = make_url(pg_database)
    missing = f"permitgate_missing_{uuid.uuid4().hex[:8]}"
    url = server.set(database=missing).render_as_string(hide_password=False)
    said = one_line(run(command(name, url, keys, tmp_path)))
    assert said == (
        f'PostgreSQL at {server.host}:{server.port or 5432} has no database "{missing}": it '
        f"must be created first (createdb {missing}), then 'permitgate registry init'"
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_port_with_no_postgresql(name: str, keys: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/permitgate"
    said = one_line(run(command(name, url, keys, tmp_path)))
    assert said == (
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}: nothing is listening there "
        "(is the server running, and is the port right?)"
    )


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://root@127.0.0.1/permitgate", "mysql:// databases are not supported"),
        ("permitgate.db", "--db 'permitgate.db' is not a database URL"),
    ],
    ids=["mysql", "no-scheme"],
)
def test_an_unsupported_db_url(name: str, url: str, why: str, keys: Path, tmp_path: Path) -> None:
    said = one_line(run(command(name, url, keys, tmp_path)))
    assert said.startswith("--db") and why in said
    assert said.endswith("(use sqlite:///PATH or postgresql://USER@HOST[:PORT]/NAME)")


def test_the_database_also_comes_from_the_environment(tmp_path: Path) -> None:
    said = one_line(invoke(["registry", "export"], PERMITGATE_DB="mysql://root@127.0.0.1/x"))
    assert said.startswith("--db: mysql:// databases are not supported")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_sqlite_file_in_a_folder_that_does_not_exist(
    name: str, keys: Path, tmp_path: Path
) -> None:
    path = tmp_path / "no-such-folder" / "registry.db"
    said = one_line(run(command(name, f"sqlite:///{path}", keys, tmp_path)))
    if name == "init":
        assert said == (
            f"cannot create the SQLite file {path}: the folder {path.parent} does not exist"
        )
    else:  # only init creates a registry
        assert said == (
            f"no registry at {path}: the file does not exist "
            "(check --db, or create one with 'permitgate registry init')"
        )
    assert not path.parent.exists()


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "init"])
def test_only_init_creates_a_database_file(name: str, keys: Path, tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    said = one_line(run(command(name, f"sqlite:///{path}", keys, tmp_path)))
    assert said.startswith(f"no registry at {path}: the file does not exist")
    assert list(tmp_path.glob("registry.db*")) == []


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_commands_on_an_uninitialised_file_leave_it_alone(
    name: str, keys: Path, tmp_path: Path
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty SQLite file: no tables at all
    result = invoke(command(name, f"sqlite:///{path}", keys, tmp_path))
    if name == "verify":  # verify reports what it finds as a difference
        assert result.exit_code == 1 and "registry: not initialised" in result.stderr
    else:
        assert one_line(result) == "no registry here: run 'permitgate registry init' first"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_file_that_is_not_sqlite(keys: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are notes, not a database\n" * 200)
    for name in ("export", "init"):
        said = one_line(run(command(name, f"sqlite:///{path}", keys, tmp_path)))
        assert said == f"the SQLite file {path} is not a SQLite database"


# --- a second writer -----------------------------------------------------------------------------


def test_a_second_import_while_another_holds_the_sqlite_write_lock(
    sqlite_reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (On PostgreSQL imports wait for each other on an advisory lock, as before.)
    reg = sqlite_reg
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    # The first import is a real process reading a pipe: it holds the write lock until the pipe
    # closes (an import takes the lock first, then reads).
    first = subprocess.Popen(
        [PERMITGATE, "registry", "import", "-", "--db", reg.url, "--keys", str(reg.keys)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdin is not None
        first.stdin.write(jsonl([structure("S-FIRST")]))
        first.stdin.flush()
        wait_for_the_write_lock(Path(reg.url.removeprefix("sqlite:///")))
        monkeypatch.setattr(storage, "SQLITE_WRITER_WAIT", 0.3)
        monkeypatch.setattr(writer, "STATE_LOCK_WAIT", 0.3)
        # The same registry (its state directory is locked first) ...
        second = reg.import_text(jsonl([structure("S-SECOND")]))
        assert one_line(second) == (
            f"the registry's state {reg.state_dir} is locked by another writer: another import "
            "or refresh is running; try again when it has finished"
        )
        # ... and another writer of it, with a state directory of its own.
        elsewhere = Registry(reg.url, reg.keys, reg.scratch, reg.scratch / "other-state")
        second = elsewhere.import_text(jsonl([structure("S-SECOND")]))
        path = reg.url.removeprefix("sqlite:///")
        assert one_line(second) == (
            f"the SQLite file {path} is locked by another writer: another import or refresh is "
            "running; try again when it has finished"
        )
        assert reg.snapshot() == before
        out, err = first.communicate(timeout=60)  # closes the pipe: the first one finishes
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert out.startswith("1 lines: 1 changes")
    exported = reg.export().decode()
    assert '"S-FIRST"' in exported and '"S-SECOND"' not in exported


def wait_for_the_write_lock(path: Path, timeout: float = 30.0) -> None:
    """Return once another connection holds ``path``'s write lock."""
    done = threading.Event()
    timer = threading.Timer(timeout, done.set)
    timer.start()
    try:
        while not done.is_set():
            db = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc), exc
                return
            finally:
                db.close()
            done.wait(0.05)
        raise AssertionError("the first import never took the write lock")
    finally:
        timer.cancel()


# --- a registry with rows deleted or added behind its back ----------------------------------------


DAMAGE = {
    # what was done: (the statement, what import and refresh say, what serve says)
    "newest head deleted": (
        "DELETE FROM head WHERE serial = (SELECT max(serial) FROM head)",
        "the database was rolled back: its newest head is serial 2 (log size 3), but this "
        "registry signed head serial 3 (log size 4), cosigned ",
        "the newest checkpoint covers 3 events but the log holds 4 (the last numbered 3): "
        + REPAIR,
    ),
    "newest events deleted": (
        "DELETE FROM event WHERE seq >= 2",
        "the newest checkpoint covers 4 events but the log holds 2 (the last numbered 1); "
        "missing: event 2, event 3: " + REPAIR,
        "the newest checkpoint covers 4 events but the log holds 2 (the last numbered 1): "
        + REPAIR,
    ),
    "an event in the middle deleted": (
        "DELETE FROM event WHERE seq = 1",
        "the newest checkpoint covers 4 events but the log holds 3 (the last numbered 3); "
        "missing: event 1: " + REPAIR,
        "the newest checkpoint covers 4 events but the log holds 3 (the last numbered 3): "
        + REPAIR,
    ),
    "an event added": (
        "INSERT INTO event (seq, structure_id, body) "
        "SELECT 4, structure_id, body FROM event WHERE seq = 3",
        "the newest checkpoint covers 4 events but the log holds 5 (the last numbered 4); "
        "added: event 4: " + REPAIR,
        "the newest checkpoint covers 4 events but the log holds 5 (the last numbered 4): "
        + REPAIR,
    ),
    "every head deleted": (
        "DELETE FROM head",
        "the database holds no head at all, but this registry signed head serial 3 (log size "
        "4), cosigned ",
        "this registry has no signed checkpoint: " + REPAIR,
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_registry_whose_newest_rows_are_missing(reg: Registry, damage: str) -> None:
    reg.load(EXAMPLE_LINES)
    reg.load([structure("S-2")])
    statement, why, served_why = DAMAGE[damage]
    reg.sql(statement)
    before = reg.snapshot()
    for args in (
        ["import", "-"],
        ["refresh", "--all"],
    ):
        result = reg.cli(*args, input=jsonl([structure("S-3")]), keys=True)
        assert one_line(result).startswith(why), args
        if "rolled back" in why or "no head" in why:
            assert one_line(result).endswith(
                f": restore the newest backup; or move {reg.state_dir} aside to re-adopt the "
                "database after a full check"
            )
    served = run(["serve", "--db", reg.url, "--keys", str(reg.keys), "--listen", "127.0.0.1:0"])
    assert one_line(served) == served_why
    assert reg.snapshot() == before  # nothing was written
    verified = reg.verify()  # verify names the differences (exit 1), never a traceback
    assert verified.exit_code == 1 and verified.stderr.strip(), verified.output


# --- permitgate serve --listen -----------------------------------------------------------------


EXAMPLE = "e.g. 127.0.0.1:50051 (this machine only) or 0.0.0.0:50051 (every interface)"


@pytest.mark.parametrize(
    ("listen", "why"),
    [
        ("0.0.0.0", f"no port; give HOST:PORT, {EXAMPLE}"),
        ("127.0.0.1:99999", "port 99999 is out of range (1 to 65535, or 0 for any free port)"),
        (":50082", f"no host before ':50082'; {EXAMPLE}"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:", f"no port after '127.0.0.1:'; {EXAMPLE}"),
        ("", f"no port; give HOST:PORT, {EXAMPLE}"),
        ("::1:50051", "an IPv6 address goes in brackets, e.g. [::1]:50051"),
        ("[::1]50051", "an IPv6 address in brackets is followed by :PORT, e.g. [::1]:50051"),
        ("[::g]:50051", "'::g' is not an IPv6 address"),
        ("gate one:50051", "'gate one' is not an IP address or a host name"),
        ("300.1.2.3:50051", "'300.1.2.3' is not an IP address or a host name"),
    ],
)
def test_serve_says_what_is_wrong_with_listen(listen: str, why: str, tmp_path: Path) -> None:
    # Checked before anything else: the database named here does not even exist.
    nothing = f"sqlite:///{tmp_path / 'none.db'}"
    result = invoke(["serve", "--listen", listen, "--db", nothing, "--keys", str(tmp_path)])
    assert one_line(result) == f"--listen {listen!r}: {why}"


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_serve_on_a_port_in_use(sqlite_reg: Registry, held_port: int) -> None:
    reg = sqlite_reg
    reg.load(EXAMPLE_LINES)
    for host in ("127.0.0.1", "localhost"):
        where = f"{host}:{held_port}"
        result = run(["serve", "--db", reg.url, "--keys", str(reg.keys), "--listen", where])
        assert one_line(result) == (
            f"cannot listen on {host}:{held_port}: port {held_port} is in use (another gate, "
            "or another program); choose another with --listen"
        )


def test_serve_on_an_address_of_another_machine(sqlite_reg: Registry) -> None:
    # 192.0.2.1 is reserved for documentation: no interface here has it (nothing is sent).
    where = "192.0.2.1:50051"
    result = invoke(
        ["serve", "--db", sqlite_reg.url, "--keys", str(sqlite_reg.keys), "--listen", where]
    )
    assert (
        one_line(result) == f"cannot listen on {where}: 192.0.2.1 is not an address of this machine"
    )


def test_why_a_bind_fails_is_told_in_words(held_port: int) -> None:
    # What serve says when gRPC's own bind fails after the check passed (a port taken between).
    assert bind_failure(ListenAddress("127.0.0.1", held_port)) == (
        f"port {held_port} is in use (another gate, or another program); choose another with "
        "--listen"
    )
    assert bind_failure(ListenAddress("127.0.0.1", 0)) is None


def test_make_demo_on_a_port_in_use(held_port: int) -> None:
    demo = ROOT / "demo"
    before = sorted(p.name for p in demo.iterdir()) if demo.exists() else None
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PERMITGATE_DEMO_LISTEN": f"127.0.0.1:{held_port}"},
    )
    assert one_line(result) == (
        f"cannot listen on 127.0.0.1:{held_port}: port {held_port} is in use (another gate, or "
        "another program); choose another with --listen (the demo listens on "
        "PERMITGATE_DEMO_LISTEN, e.g. PERMITGATE_DEMO_LISTEN=127.0.0.1:50052 make demo)"
    )
    # Checked before anything was built: a demo folder there is left as it was.
    assert (sorted(p.name for p in demo.iterdir()) if demo.exists() else None) == before


def test_make_demo_with_a_bad_address() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PERMITGATE_DEMO_LISTEN": "0.0.0.0"},
    )
    assert one_line(result).startswith(f"--listen '0.0.0.0': no port; give HOST:PORT, {EXAMPLE}")


# --- the choices come from the client's tables ---------------------------------------------------


def test_check_options_and_check_file_help_offer_the_clients_choices() -> None:
    options = {
        ("connection", "utility"): UTILITIES,
        ("connection", "kind"): CONNECTION_KINDS,
        ("registration", "kind"): REGISTRATION_KINDS,
        ("premises", "office"): OFFICES,
    }
    for (command, option), table in options.items():
        [param] = [p for p in check.commands[command].params if p.name == option]
        assert isinstance(param.type, click.Choice)
        assert tuple(param.type.choices) == table, (command, option)
        shown = invoke(["check", command, "--help"]).stdout
        assert f"[{'|'.join(table)}]" in " ".join(shown.split()), (command, shown)
    shown = invoke(["check-file", "--help"]).stdout
    for table in options.values():
        assert " | ".join(table) in " ".join(shown.replace(" |\n", " | ").split()), shown


# --- the help says what every exit status means ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "codes"),
    [
        (["registry", "--help"], ["0  done", "1  'verify'", "2  bad input"]),
        (["registry", "import", "--help"], ["0  done", "2  bad input"]),
        (["serve", "--help"], ["0  stopped by SIGINT", "2  bad options"]),
        (
            ["check", "--help"],
            ["0   answered", "10  with", "20  with", "30  with", "2   bad", "3   the gate"],
        ),
        (["check", "connection", "--help"], ["10  with --exit-code: NOTIFY", "3   the gate"]),
        (["check-file", "--help"], ["0  every row", "1  some rows", "2  bad", "3  the gate"]),
        (["keys", "--help"], ["0  printed", "3  the gate"]),
        (["receipt", "verify", "--help"], ["0  verified", "1  the receipt", "2  bad", "3  no"]),
    ],
)
def test_help_documents_the_exit_codes(args: list[str], codes: list[str]) -> None:
    shown = invoke(args)
    assert shown.exit_code == 0
    lines = [line.strip() for line in shown.stdout.splitlines()]
    after = lines[lines.index("Exit codes:") :]
    for code in codes:
        assert any(line.startswith(code) for line in after), (code, shown.stdout)
