"""``permitgate check-file FILE.csv``: one check a row, sent over BatchCheck, results in row order.

Built on the client package: each good row becomes a ``permitgate_client.Check`` and goes to the
gate through ``Client.check_many``, which answers in order, one ``Decision`` or ``Refused`` per
check. A row that cannot be a check (a missing or unknown value, a column its type does not use,
text that is not UTF-8) is reported with its line number and not sent; the others go on. Every
row gets one result line in the output, with the line number it came from.

The checks are read in the gRPC sending thread while answers arrive in this one, so rows wait in
a queue, in file order, until their answer comes: a row not sent is settled as it is queued.
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click
import orjson
from permitgate_client import (
    CONNECTION_KINDS,
    OFFICES,
    REGISTRATION_KINDS,
    UTILITIES,
    Check,
    Decision,
    GateError,
    InvalidCheckError,
    Refused,
    Verdict,
)
from permitgate_client.formats import parse_time
from tqdm import tqdm

from permitgate.check_cli import UNREACHABLE, GateAddress, gate_options
from registry.errors import PlainError

__all__ = ["COLUMNS", "check_file"]

COLUMNS = (
    "type",
    "structure_id",
    "utility",
    "kind",
    "requested_until",
    "office",
    "declared_use",
    "application_id",
)
_USES: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # type: (required, optional)
    "connection": (
        frozenset({"structure_id", "utility"}),
        frozenset({"kind", "requested_until", "application_id"}),
    ),
    "registration": (frozenset({"structure_id", "kind"}), frozenset({"application_id"})),
    "premises": (
        frozenset({"structure_id", "office", "declared_use"}),
        frozenset({"application_id"}),
    ),
}
_CHOICES = ("type", "utility", "kind", "office")  # case and spaces do not matter in these
OUTPUT_COLUMNS = (
    "line",
    "type",
    "structure_id",
    "application_id",
    "verdict",
    "reasons",
    "valid_until",
    "notification_id",
    "registry_version",
    "decision_id",
    "error",
)
NOT_CHECKED = 1


def _choices(label: str, values: tuple[str, ...]) -> str:
    """``label`` and the values a column may take (``a | b | c``), wrapped under the help's
    second column (which starts at 19)."""
    lines, line = [], label
    for value in values:
        piece = value if line in ("", label) else f" | {value}"
        if len(line) + len(piece) > 58 and line.strip():
            lines.append(line + " |")
            line, piece = " " * len(label), value
        line += piece
    return ("\n" + " " * 19).join([*lines, line])


CHECK_FILE_HELP = f"""\b
Columns (a header row names them; order free; empty cells are absent):
  type             {" | ".join(_USES)}
  structure_id     the structure asked about (every type)
  utility          {_choices("connection: ", UTILITIES)}
  kind             {_choices("connection: ", CONNECTION_KINDS)}
                   (default permanent);
                   {_choices("registration: ", REGISTRATION_KINDS)}
  requested_until  connection, temporary: RFC 3339 end of supply
  office           {_choices("premises: ", OFFICES)}
  declared_use     premises: the use the applicant declares
  application_id   the caller's application id (notifying offices need it)

\b
Output (--out FILE.csv or FILE.jsonl; standard output as CSV without it):
  one result a row, with the row's line number: verdict, reasons (codes),
  valid_until, notification_id, registry_version, decision_id, or error.

\b
Exit codes:
  0  every row was checked (whatever the verdicts)
  1  some rows were not checked (each reported as 'line N: ...'); the
     others were
  2  bad options, or a file that cannot be read as checks (a bad header:
     nothing sent; a line that is not CSV: the rows before it were answered)
  3  the gate could not be reached or stopped answering"""


@dataclass
class _Row:
    """One row of the file, and its answer once it has one."""

    line: int
    type: str
    structure_id: str
    application_id: str
    check: Check | None  # None: not sent
    error: str = ""
    result: Decision | Refused | None = None


class _Rows:
    """Reads the CSV file into checks, queueing every row (sent or not) in file order."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.name = name
        self.bad_lines: dict[int, str] = {}
        self.source = _utf8_lines(stream, self.bad_lines)
        self.reader = csv.reader(self.source)
        self.header = self._header()
        self.queue: deque[_Row] = deque()

    def _header(self) -> list[str]:
        try:
            header = next(self.reader, None)
        except csv.Error as exc:
            raise PlainError(f"{self.name}: line 1: not CSV: {exc}") from exc
        for line in range(1, self.reader.line_num + 1):
            if line in self.bad_lines:
                raise PlainError(f"{self.name}: line {line}: {self.bad_lines[line]}")
        if header is None:
            raise PlainError(f"{self.name}: empty file (a header row names the columns)")
        names = [h.strip().lower() for h in header]
        unknown = [h for h in names if h not in COLUMNS]
        if unknown:
            raise PlainError(
                f"{self.name}: line 1: unknown column {unknown[0]!r} (the columns: "
                f"{', '.join(COLUMNS)})"
            )
        for needed in ("type", "structure_id"):
            if needed not in names:
                raise PlainError(f"{self.name}: line 1: no {needed!r} column")
        twice = sorted({h for h in names if names.count(h) > 1})
        if twice:
            raise PlainError(f"{self.name}: line 1: column {twice[0]!r} is named twice")
        return names

    def checks(self) -> Iterator[Check]:
        """The checks to send, in order; every row is queued first (the not sent ones too)."""
        last = self.reader.line_num
        while True:
            try:
                cells = next(self.reader, None)
            except csv.Error as exc:
                raise PlainError(f"{self.name}: line {last + 1}: not CSV: {exc}") from exc
            if cells is None:
                return
            start, last = last + 1, self.reader.line_num
            if not any(c.strip() for c in cells):
                continue
            row = self._row(start, last, cells)
            self.queue.append(row)
            if row.check is not None:
                yield row.check

    def _row(self, start: int, end: int, cells: list[str]) -> _Row:
        values = {
            name: cell.strip().lower() if name in _CHOICES else cell
            for name, cell in zip(self.header, cells, strict=False)
            if cell.strip()
        }
        row = _Row(
            start,
            values.get("type", ""),
            values.get("structure_id", ""),
            values.get("application_id", ""),
            None,
        )
        bad = [self.bad_lines.pop(n) for n in range(start, end + 1) if n in self.bad_lines]
        if len(cells) > len(self.header):
            bad.append(f"{len(cells)} cells, but the header names {len(self.header)} columns")
        if bad:
            row.error = "; ".join(bad)
            return row
        try:
            row.check = _check(values, correlation_id=str(start))
        except (InvalidCheckError, ValueError) as exc:
            row.error = str(exc)
        return row


def _check(values: dict[str, str], *, correlation_id: str) -> Check:
    """The check a row asks for, or a ``ValueError`` naming every column at fault."""
    kind = values.get("type")
    if kind not in _USES:
        raise ValueError(
            "type: missing"
            if kind is None
            else f"type: unknown value {kind!r} (one of {', '.join(_USES)})"
        )
    required, optional = _USES[kind]
    problems = [f"{c}: missing" for c in sorted(required - values.keys())]
    problems += [
        f"{c}: not used by a {kind} check"
        for c in sorted(values.keys() - required - optional - {"type"})
    ]
    if problems:
        raise ValueError("; ".join(problems))
    sid, application_id = values["structure_id"], values.get("application_id", "")
    if kind == "connection":
        until = values.get("requested_until")
        try:
            requested_until = None if until is None else parse_time(until)
        except ValueError as exc:
            raise ValueError(f"requested_until: {exc}") from exc
        return Check.connection(
            sid,
            utility=values["utility"],
            kind=values.get("kind", "permanent"),
            requested_until=requested_until,
            application_id=application_id,
            correlation_id=correlation_id,
        )
    if kind == "registration":
        return Check.registration(
            sid, kind=values["kind"], application_id=application_id, correlation_id=correlation_id
        )
    return Check.premises(
        sid,
        office=values["office"],
        declared_use=values["declared_use"],
        application_id=application_id,
        correlation_id=correlation_id,
    )


def _utf8_lines(stream: BinaryIO, bad: dict[int, str]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is noted in ``bad`` (by number)."""
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # spreadsheet programs write a BOM
        try:
            yield raw.decode()
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode()) + 1
            bad[number] = (
                f"not UTF-8 text: byte 0x{raw[exc.start]:02X} at column {column} "
                "(save the file as UTF-8)"
            )
            yield raw.decode(errors="replace")


_BATCH_PREFIX = re.compile(r"^checks\[\d+\](?:\.(?:connection|registration|premises)\.|:\s*)")


class _Output:
    """Result lines, as CSV or JSON Lines, each with the row's line number."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.csv = None if as_json else csv.writer(stream, lineterminator="\n")
        if self.csv is not None:
            self.csv.writerow(OUTPUT_COLUMNS)

    def write(self, row: _Row) -> None:
        fields = _result_fields(row)
        if self.csv is None:
            self.stream.write(orjson.dumps(fields).decode() + "\n")
            return
        fields["reasons"] = ";".join(r["code"] for r in fields["reasons"])
        self.csv.writerow(["" if fields.get(c) is None else fields[c] for c in OUTPUT_COLUMNS])


def _result_fields(row: _Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "line": row.line,
        "type": row.type or None,
        "structure_id": row.structure_id or None,
        "application_id": row.application_id or None,
    }
    result = row.result
    if isinstance(result, Decision):
        answer = result.to_json()
        out |= {
            "verdict": answer["verdict"],
            "reasons": answer["reasons"],
            "valid_until": answer["valid_until"],
            "notification_id": answer["notification_id"],
            "registry_version": answer["registry_version"],
            "decision_id": answer["decision_id"],
            "error": None,
        }
    else:
        out |= {"verdict": None, "reasons": [], "error": row.error}
    return out


@click.command("check-file", epilog=CHECK_FILE_HELP)
@click.argument("file", type=click.File("rb"))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the results here: .csv or .jsonl (default: CSV on standard output).",
)
@gate_options
def check_file(file: BinaryIO, out: Path | None, gate: GateAddress) -> None:
    """Send one check for each row of FILE (CSV; '-' for standard input) and write the answers."""
    as_json = out is not None and out.suffix.lower() in (".jsonl", ".ndjson")
    if out is not None and not as_json and out.suffix.lower() != ".csv":
        raise click.BadParameter("name a .csv or a .jsonl file", param_hint="--out")
    name = getattr(file, "name", "FILE")
    name = "standard input" if name == "<stdin>" else str(name)
    rows = _Rows(file, name)
    total = _count_rows(file)
    verdicts: Counter[Verdict] = Counter()
    skipped = 0
    target = out.open("w", encoding="utf-8", newline="") if out is not None else None
    stream = target if target is not None else sys.stdout
    output = _Output(stream, as_json)
    bar = tqdm(
        total=total, unit="row", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False
    )

    def settle(row: _Row) -> None:
        nonlocal skipped
        output.write(row)
        bar.update()
        if isinstance(row.result, Decision):
            verdicts[row.result.verdict] += 1
        else:
            skipped += 1
            bar.write(f"line {row.line}: {row.error}", file=sys.stderr)

    try:
        with gate.client() as client:
            for result in client.check_many(rows.checks()):
                while rows.queue[0].check is None:
                    settle(rows.queue.popleft())
                row = rows.queue.popleft()
                if result.correlation_id != str(row.line):  # check_many answers in order
                    raise RuntimeError(f"answer {result.correlation_id!r} for line {row.line}")
                if isinstance(result, Refused):
                    row.error = f"refused by the gate: {_BATCH_PREFIX.sub('', result.error)}"
                row.result = result
                settle(row)
        while rows.queue:
            settle(rows.queue.popleft())
    except GateError as exc:
        bar.close()
        stream.flush()
        answered = sum(verdicts.values())
        click.echo(
            f"permitgate: the gate at {gate.target} did not answer: {exc} "
            f"({answered} rows were answered and written first)",
            err=True,
        )
        sys.exit(UNREACHABLE)
    finally:
        bar.close()
        stream.flush()
        if target is not None:
            target.close()
    checked = sum(verdicts.values())
    counts = ", ".join(f"{verdicts[v]} {v.value}" for v in Verdict if verdicts[v])
    summary = f"{checked} of {checked + skipped} rows checked" + (f": {counts}" if counts else "")
    if skipped:
        summary += f"; {skipped} not checked (see the lines above)"
    click.echo(summary, err=True)
    if skipped:
        sys.exit(NOT_CHECKED)


def _count_rows(file: BinaryIO) -> int | None:
    """About how many rows a regular file holds (its lines less the header), for the bar."""
    try:
        path = Path(file.name)
        if not path.is_file():
            return None
        with path.open("rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return max(lines - 1, 0)
    except (OSError, AttributeError, TypeError):
        return None
