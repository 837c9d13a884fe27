"""A licensing office verifies premises before licensing them, and shows the notice it was given.

Art. 13: market regulation, culture, health and tax offices must tell the working group when
premises lack a planning permit or property certificate, or their declared use differs from the
permitted one; civil defence, environment and fire must not issue permits or acceptance for such
premises. The gate records the notice for the working group and returns its id; asking again for
the same application gives the same notice, not a second one.

Try it against the demo registry: run ``make demo`` in one terminal (it serves the gate on
127.0.0.1:50051 and prints which demo structure shows which case), then in another::

    .venv/bin/python clients/examples/licensing_premises.py 110228-0000-0010 \\
        --office tax --use restaurant --application L-2026-0093
    .venv/bin/python clients/examples/licensing_premises.py 110228-0000-0000 \\
        --office tax --use residential --application L-2026-0094

The gate is ``--target HOST:PORT``, else ``PERMITGATE_TARGET``, else 127.0.0.1:50051. Exit
status: 0 when the office may go ahead (ALLOW, or NOTIFY once the notice is recorded), 1 when it
may not (DENY, REVIEW), 2 when the gate could not be asked.
"""

from __future__ import annotations

import argparse
import os
import sys

from permitgate_client import Client, GateError, Verdict

OFFICES = (
    "market_regulation",
    "culture",
    "health",
    "tax",
    "civil_defense",
    "environment",
    "fire",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structure_id", help="the premises' structure id")
    parser.add_argument("--office", required=True, choices=OFFICES)
    parser.add_argument("--use", required=True, help="the use the applicant declares")
    parser.add_argument("--application", required=True, help="the office's application id")
    parser.add_argument("--target", default=os.environ.get("PERMITGATE_TARGET", "127.0.0.1:50051"))
    args = parser.parse_args()
    try:
        with Client(args.target, timeout=5.0) as client:
            decision = client.verify_premises(
                args.structure_id,
                office=args.office,
                declared_use=args.use,
                application_id=args.application,
            )
    except GateError as exc:
        print(f"the gate at {args.target} did not answer: {exc}", file=sys.stderr)
        return 2
    print(f"{decision.verdict}  {args.structure_id}: {args.office} office, use {args.use!r}")
    for reason in decision.reasons:
        about = reason.permit_kind or reason.case_id
        print(f"    {reason.code} (Art. {reason.article}{', ' + about if about else ''})")
        print(f"        {reason.message}")
    if decision.verdict is Verdict.NOTIFY:
        print(f"the working group was notified: notice {decision.notification_id}")
        print(f"(application {args.application} keeps this notice if asked again)")
        return 0
    if decision.verdict is Verdict.ALLOW:
        print("the premises hold their permits for this use; nothing to notify")
        return 0
    if decision.verdict is Verdict.REVIEW:
        print("the gate cannot answer from verified, fresh data now: decide by hand or retry")
        return 1
    print("do not issue the permit or acceptance (Art. 13)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
