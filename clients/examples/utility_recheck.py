"""A utility re-verifies every connection it serves, and prints those that are no longer ALLOW.

Art. 23 forbids serving a structure without its planning permits, and Art. 28 punishes a utility
that does; permits are revoked and cases opened after a connection is made, so a utility re-asks
for all of them, say nightly. The CSV has one connection a row, with the columns ``account``,
``structure_id``, ``utility`` (water, power, gas, heat) and ``kind`` (permanent, temporary). All
rows go to the gate over one stream (``Client.check_many``), answered in order.

Try it against the demo registry: run ``make demo`` in one terminal (it serves the gate on
127.0.0.1:50051 and prints which demo structure shows which case), then in another::

    .venv/bin/python clients/examples/utility_recheck.py clients/examples/connections.csv

The gate is ``--target HOST:PORT``, else ``PERMITGATE_TARGET``, else 127.0.0.1:50051. Exit
status: 0 when every connection is still ALLOW, 1 when some need attention, 2 when the file or
the gate could not be used.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from permitgate_client import Check, Client, Decision, GateError, InvalidCheckError, Verdict


def read_checks(path: Path, rows: dict[str, str], problems: list[str]) -> Iterator[Check]:
    """One ``Check`` a row, its line number as correlation id (``rows`` says what it was); a row
    that cannot be a check goes to ``problems`` instead."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        for row in reader:
            line = str(reader.line_num)
            try:
                account, structure_id = row["account"].strip(), row["structure_id"].strip()
                utility = row["utility"].strip()
                yield Check.connection(
                    structure_id,
                    utility=utility,
                    kind=(row.get("kind") or "permanent").strip(),
                    application_id=account,
                    correlation_id=line,
                )
            except (InvalidCheckError, KeyError, AttributeError) as exc:
                problems.append(f"line {line}: not checked: {exc}")
                continue
            rows[line] = f"account {account}, {utility} to {structure_id}"


def show(decision: Decision, what: str) -> None:
    print(f"{decision.verdict:<16} {what}")
    for reason in decision.reasons:
        about = reason.permit_kind or reason.case_id
        print(f"    {reason.code} (Art. {reason.article}{', ' + about if about else ''})")
        print(f"        {reason.message}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="the connections served (see the docstring)")
    parser.add_argument("--target", default=os.environ.get("PERMITGATE_TARGET", "127.0.0.1:50051"))
    args = parser.parse_args()
    rows: dict[str, str] = {}
    problems: list[str] = []
    still_allowed = attention = 0
    try:
        with Client(args.target, timeout=10.0) as client:
            for result in client.check_many(read_checks(args.csv, rows, problems)):
                if not isinstance(result, Decision):  # the gate refused the row as asked
                    problems.append(f"line {result.correlation_id}: not checked: {result.error}")
                elif result.verdict is Verdict.ALLOW:
                    still_allowed += 1
                else:
                    attention += 1
                    show(result, rows[result.correlation_id])
    except OSError as exc:
        print(f"cannot read {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2
    except GateError as exc:
        print(f"the gate at {args.target} did not answer: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"{still_allowed + attention} connections checked: {still_allowed} still ALLOW, "
        f"{attention} need attention, {len(problems)} not checked"
    )
    return 2 if problems else 1 if attention else 0


if __name__ == "__main__":
    sys.exit(main())
