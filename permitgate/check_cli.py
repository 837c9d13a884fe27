"""``permitgate check ...``, ``permitgate keys`` and ``permitgate receipt verify``.

Exit codes: 0 answered (whatever the verdict, unless ``--exit-code``: then ``VERDICT_EXIT_CODES``)
or verified; 1 a receipt did not verify; 2 bad arguments or an invalid check; 3 the gate could
not be reached. ``CHECK_EXIT_CODES`` says it in ``--help``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import grpc
import orjson
from permitgate_client import (
    ASKING,
    CONNECTION_KINDS,
    OFFICES,
    REGISTRATION_KINDS,
    UTILITIES,
    Check,
    Client,
    Decision,
    GateError,
    InvalidCheckError,
    KeySet,
    MalformedError,
    Verdict,
    VerificationError,
    VerifierKey,
    verify_receipt,
)
from permitgate_client.formats import format_time, parse_time

from permitgate.offline import answer_offline
from registry.signing import DEFAULT_KEYS_DIR, load_verifier
from registry.snapshot import Found, Snapshot
from server.checks import InvalidCheck
from server.listen import parse_target

DEFAULT_TARGET = "127.0.0.1:50051"

VERDICT_EXIT_CODES = {
    Verdict.ALLOW: 0,
    Verdict.ALLOW_TEMPORARY: 0,
    Verdict.NOTIFY: 10,
    Verdict.REVIEW: 20,
    Verdict.DENY: 30,
}
"""With ``--exit-code``: what a script can branch on (0 the caller may go ahead)."""
INVALID_CHECK = 2
UNREACHABLE = 3

CHECK_EXIT_CODES = """\b
Exit codes:
  0   answered (any verdict); with --exit-code: ALLOW or ALLOW_TEMPORARY
  10  with --exit-code: NOTIFY (go ahead; the working group was told)
  20  with --exit-code: REVIEW (a person must decide)
  30  with --exit-code: DENY
  1   with --snapshot: the snapshot does not verify, or is older than --max-age
      (it names the line at fault)
  2   bad arguments, or a check the gate calls invalid (it names the field)
  3   the gate could not be reached or did not answer"""


@dataclass(frozen=True)
class GateAddress:
    """Where the gate is, and the TLS credentials to reach it (None: plaintext)."""

    target: str
    credentials: grpc.ChannelCredentials | None = None

    def client(self) -> Client:
        return Client(self.target, credentials=self.credentials)


def gate_options(command: Callable[..., None]) -> Callable[..., None]:
    """--target and the TLS options, handed to the command as one ``gate: GateAddress``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        target: str,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        **kwargs: Any,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise click.UsageError("--tls-cert and --tls-key go together")
        target = parse_target(target)
        credentials = None
        if tls_ca is not None or tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=None if tls_ca is None else tls_ca.read_bytes(),
                private_key=None if tls_key is None else tls_key.read_bytes(),
                certificate_chain=None if tls_cert is None else tls_cert.read_bytes(),
            )
        command(*args, gate=GateAddress(target, credentials), **kwargs)

    file = click.Path(dir_okay=False, exists=True, path_type=Path)
    for option in (
        click.option(
            "--target",
            default=DEFAULT_TARGET,
            show_default=True,
            envvar="PERMITGATE_TARGET",
            help="The gate's host:port (env PERMITGATE_TARGET).",
        ),
        click.option("--tls-ca", type=file, help="Use TLS; trust this CA for the gate."),
        click.option("--tls-cert", type=file, help="Client certificate (mutual TLS)."),
        click.option("--tls-key", type=file, help="Client key (mutual TLS)."),
    ):
        wrapper = option(wrapper)
    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
exit_code_option = click.option(
    "--exit-code",
    "verdict_exit",
    is_flag=True,
    help="Exit with the verdict's code: 0 ALLOW or ALLOW_TEMPORARY, 10 NOTIFY, 20 REVIEW, 30 DENY.",
)
application_option = click.option(
    "--application", "application_id", default="", help="The caller's application id."
)
receipt_option = click.option(
    "--receipt",
    "receipt_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ask for a signed receipt and write it to this file.",
)


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from exc


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[timedelta, Any]):
    """A span of time: seconds (``300``), or a number with a unit (``90s``, ``5m``, ``2h``,
    ``1d``)."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:])
        number = text[:-1] if unit is not None else text
        try:
            amount = float(number)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 300, 90s, 5m, 2h, 1d)", param, ctx)
        if not amount >= 0 or amount == float("inf"):
            self.fail(f"{value!r}: a duration is a finite number, not negative", param, ctx)
        return timedelta(seconds=amount * (unit or 1))


@dataclass(frozen=True)
class Offline:
    """``--snapshot``: answer from this file, verified with the registry key in ``keys_dir``."""

    snapshot: Path
    keys_dir: Path
    max_age: timedelta


def offline_options(command: Callable[..., None]) -> Callable[..., None]:
    """--snapshot, --max-age and --keys, handed to the command as ``offline: Offline | None``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any, snapshot: Path | None, max_age: timedelta, keys_dir: Path, **kwargs: Any
    ) -> None:
        offline = None if snapshot is None else Offline(snapshot, keys_dir, max_age)
        command(*args, offline=offline, **kwargs)

    for option in (  # applied in turn, so listed by --help last to first
        click.option(
            "--keys",
            "keys_dir",
            envvar="PERMITGATE_KEYS",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_KEYS_DIR,
            show_default=True,
            help="With --snapshot: the folder holding registry.pub (env PERMITGATE_KEYS).",
        ),
        click.option(
            "--max-age",
            type=Duration(),
            default="1d",
            show_default=True,
            help="With --snapshot: the oldest its registry head may be (cosigned time).",
        ),
        click.option(
            "--snapshot",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="Answer offline from this snapshot ('permitgate registry snapshot'), by the "
            "gate's rules, instead of asking a gate.",
        ),
    ):
        wrapper = option(wrapper)
    return wrapper


_CHECKS: dict[str, Callable[..., Check]] = {
    "check_connection": Check.connection,
    "check_registration": Check.registration,
    "verify_premises": Check.premises,
    "check_applicant": Check.applicant,
}


def _ask(
    gate: GateAddress,
    method: str,
    structure_id: str,
    receipt_file: Path | None,
    as_json: bool,
    verdict_exit: bool,
    offline: Offline | None,
    **kwargs: Any,
) -> None:
    if offline is not None:
        if receipt_file is not None:
            raise click.UsageError("--receipt needs a gate: a snapshot signs no receipts")
        _ask_offline(offline, method, structure_id, as_json, verdict_exit, **kwargs)
        return
    try:
        with gate.client() as client:
            decision: Decision = getattr(client, method)(
                structure_id, receipt=receipt_file is not None, **kwargs
            )
    except InvalidCheckError as exc:
        click.echo(f"permitgate: invalid check: {exc}", err=True)
        sys.exit(INVALID_CHECK)
    except GateError as exc:
        click.echo(f"permitgate: the gate at {gate.target} did not answer: {exc}", err=True)
        sys.exit(UNREACHABLE)
    _show(decision, structure_id, receipt_file, as_json)
    if verdict_exit:
        sys.exit(VERDICT_EXIT_CODES[decision.verdict])


def _ask_offline(
    offline: Offline,
    method: str,
    structure_id: str,
    as_json: bool,
    verdict_exit: bool,
    **kwargs: Any,
) -> None:
    """Answer from the snapshot; its refusals (``SnapshotUnusable``, exit 1) and key errors
    reach the command's one boundary (``permitgate.cli``) as one line."""
    try:
        check = _CHECKS[method](structure_id, **kwargs)
    except InvalidCheckError as exc:
        click.echo(f"permitgate: invalid check: {exc}", err=True)
        sys.exit(INVALID_CHECK)
    registry_key = load_verifier(offline.keys_dir, "registry")
    now = datetime.now(UTC)
    snapshot = Snapshot.open(offline.snapshot, registry_key, now=now, max_age=offline.max_age)
    try:
        answer = answer_offline(snapshot, check, now)
    except InvalidCheck as exc:
        click.echo(f"permitgate: invalid check: {exc}", err=True)
        sys.exit(INVALID_CHECK)
    decision = Decision.from_proto(answer.message())
    if as_json:
        shown = decision.to_json()
        shown["snapshot"] = {
            "file": str(offline.snapshot),
            "registry_version": snapshot.head.size,
            "head_serial": snapshot.head.map.serial,
            "cosigned_at": format_time(snapshot.cosigned_at),
            "district": snapshot.district,
            "record_sha256": answer.found.digest.hex() if isinstance(answer.found, Found) else None,
        }
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    else:
        age = (now - snapshot.cosigned_at).total_seconds()
        click.echo(
            f"{decision.verdict.value}  {structure_id}  (offline: registry version "
            f"{snapshot.head.size} from {offline.snapshot}, cosigned "
            f"{format_time(snapshot.cosigned_at)}, {age:.0f} s ago)"
        )
        for r in decision.reasons:
            about = r.permit_kind or r.case_id
            click.echo(
                f"  - {r.code} [Art. {r.article}]{' ' + about if about else ''}: {r.message}"
            )
        if decision.valid_until is not None:
            click.echo(f"  valid until {format_time(decision.valid_until)}")
        if decision.verdict is Verdict.NOTIFY:
            click.echo(
                "  offline: the working group is NOT notified (only a gate records the notice)"
            )
    if verdict_exit:
        sys.exit(VERDICT_EXIT_CODES[decision.verdict])


def _show(decision: Decision, structure_id: str, receipt_file: Path | None, as_json: bool) -> None:
    if receipt_file is not None and decision.receipt is not None:
        receipt_file.write_bytes(decision.receipt + b"\n")
    if as_json:
        click.echo(orjson.dumps(decision.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(
        f"{decision.verdict.value}  {structure_id}  (registry version "
        f"{decision.registry_version}, decision {decision.decision_id})"
    )
    for r in decision.reasons:
        about = r.permit_kind or r.case_id
        click.echo(f"  - {r.code} [Art. {r.article}]{' ' + about if about else ''}: {r.message}")
    if decision.valid_until is not None:
        click.echo(f"  valid until {format_time(decision.valid_until)}")
    if decision.notification_id is not None:
        click.echo(f"  working group notified: {decision.notification_id}")
    if receipt_file is not None:
        click.echo(f"  receipt written to {receipt_file}")


@click.group(epilog=CHECK_EXIT_CODES)
def check() -> None:
    """Ask the gate about a structure (for a file of checks: 'permitgate check-file'), or
    answer offline from a verified snapshot (--snapshot)."""


@check.command(epilog=CHECK_EXIT_CODES)
@click.argument("structure_id")
@click.option("--utility", type=click.Choice(UTILITIES), required=True)
@click.option(
    "--kind",
    type=click.Choice(CONNECTION_KINDS),
    default="permanent",
    show_default=True,
)
@click.option("--until", "until", metavar="TIME", help="For temporary supply: requested end.")
@application_option
@receipt_option
@gate_options
@offline_options
@json_option
@exit_code_option
def connection(
    structure_id: str,
    utility: str,
    kind: str,
    until: str | None,
    application_id: str,
    receipt_file: Path | None,
    gate: GateAddress,
    offline: Offline | None,
    as_json: bool,
    verdict_exit: bool,
) -> None:
    """May a utility connect STRUCTURE_ID? (Art. 23)"""
    _ask(
        gate,
        "check_connection",
        structure_id,
        receipt_file,
        as_json,
        verdict_exit,
        offline,
        utility=utility,
        kind=kind,
        requested_until=_time(until),
        application_id=application_id,
    )


@check.command(epilog=CHECK_EXIT_CODES)
@click.argument("structure_id")
@click.option(
    "--kind",
    type=click.Choice(REGISTRATION_KINDS),
    required=True,
)
@application_option
@receipt_option
@gate_options
@offline_options
@json_option
@exit_code_option
def registration(
    structure_id: str,
    kind: str,
    application_id: str,
    receipt_file: Path | None,
    gate: GateAddress,
    offline: Offline | None,
    as_json: bool,
    verdict_exit: bool,
) -> None:
    """May the housing registry register STRUCTURE_ID? (Art. 11)"""
    _ask(
        gate,
        "check_registration",
        structure_id,
        receipt_file,
        as_json,
        verdict_exit,
        offline,
        kind=kind,
        application_id=application_id,
    )


@check.command(epilog=CHECK_EXIT_CODES)
@click.argument("structure_id")
@click.option(
    "--office",
    required=True,
    type=click.Choice(OFFICES),
)
@click.option("--use", "declared_use", required=True, help="The use the applicant declares.")
@application_option
@receipt_option
@gate_options
@offline_options
@json_option
@exit_code_option
def premises(
    structure_id: str,
    office: str,
    declared_use: str,
    application_id: str,
    receipt_file: Path | None,
    gate: GateAddress,
    offline: Offline | None,
    as_json: bool,
    verdict_exit: bool,
) -> None:
    """Do the premises at STRUCTURE_ID hold their permits for the declared use? (Art. 13)"""
    _ask(
        gate,
        "verify_premises",
        structure_id,
        receipt_file,
        as_json,
        verdict_exit,
        offline,
        office=office,
        declared_use=declared_use,
        application_id=application_id,
    )


@check.command(epilog=CHECK_EXIT_CODES)
@click.argument("party_id")
@click.option(
    "--asking",
    required=True,
    type=click.Choice(ASKING),
    help="The department that asks: planning, or housing and construction.",
)
@application_option
@receipt_option
@gate_options
@json_option
@exit_code_option
def applicant(
    party_id: str,
    asking: str,
    application_id: str,
    receipt_file: Path | None,
    gate: GateAddress,
    as_json: bool,
    verdict_exit: bool,
) -> None:
    """May planning or housing accept an application of PARTY_ID, an organisation named by
    cases? DENY while a case suspends it for ignoring a stop or demolition order (Art. 22).
    Asked of a gate that holds the whole registry (not one served with --redis)."""
    _ask(
        gate,
        "check_applicant",
        party_id,
        receipt_file,
        as_json,
        verdict_exit,
        None,
        asking=asking,
        application_id=application_id,
    )


KEYS_EXIT_CODES = """\b
Exit codes:
  0  printed
  3  the gate could not be reached or did not answer"""

RECEIPT_EXIT_CODES = """\b
Exit codes:
  0  verified
  1  the receipt does not verify (the reason is printed); with --require-fresh,
     also when its data is not shown to be at most --max-age old
  2  bad arguments, or a KeySet or key file that cannot be read
  3  no --keyset or --registry-key, and the gate could not be reached for its keys"""

DEFAULT_RECEIPT_MAX_AGE = timedelta(seconds=300)
"""A gate's default staleness bound (``permitgate serve --max-staleness``)."""


@click.command(epilog=KEYS_EXIT_CODES)
@gate_options
def keys(gate: GateAddress) -> None:
    """Print the gate's KeySet (registry and gate verifier keys) as JSON, to keep for later."""
    try:
        with gate.client() as client:
            keyset = client.keys()
    except GateError as exc:
        click.echo(f"permitgate: the gate at {gate.target} did not answer: {exc}", err=True)
        sys.exit(3)
    click.echo(orjson.dumps(keyset.to_json(), option=orjson.OPT_INDENT_2).decode())


@click.group(epilog=RECEIPT_EXIT_CODES)
def receipt() -> None:
    """Work with signed receipts."""


@receipt.command(epilog=RECEIPT_EXIT_CODES)
@click.argument("file", type=click.File("rb"))
@click.option(
    "--keyset",
    type=click.File("rb"),
    help="KeySet JSON from 'permitgate keys' (offline); else ask --target.",
)
@click.option(
    "--registry-key",
    "registry_key_file",
    type=click.File("rb"),
    help="The registry's public key file (registry.pub): verifies the receipt of any gate the "
    "registry vouches for, with no KeySet.",
)
@click.option(
    "--max-age",
    type=Duration(),
    default="300s",
    show_default=True,
    help="How old the registry data may have been at the decision to count as fresh.",
)
@click.option(
    "--require-fresh",
    is_flag=True,
    help="Exit 1 unless the data is shown to be at most --max-age old at the decision.",
)
@gate_options
def verify(
    file: Any,
    keyset: Any,
    registry_key_file: Any,
    max_age: timedelta,
    require_fresh: bool,
    gate: GateAddress,
) -> None:
    """Verify a receipt offline against the registry key or a KeySet, and print what it proves:
    the gate key that signed it, until when the registry vouches for that key, the registry
    head the answer rests on and how old its data was at the decision."""
    if keyset is not None and registry_key_file is not None:
        raise click.UsageError("give --keyset or --registry-key, not both")
    keys: KeySet | VerifierKey
    try:
        if registry_key_file is not None:
            keys = _registry_key(registry_key_file.read())
        elif keyset is not None:
            keys = KeySet.from_json(keyset.read())
        else:
            with gate.client() as client:
                keys = client.keys()
            click.echo(
                f"note: keys taken from the gate at {gate.target} itself; for a check that does "
                "not rest on that gate, pass --registry-key registry.pub (or a KeySet kept "
                "from 'permitgate keys' as --keyset)",
                err=True,
            )
    except MalformedError as exc:
        click.echo(
            f"permitgate: bad {'key file' if registry_key_file else 'keyset'}: {exc}", err=True
        )
        sys.exit(2)
    except GateError as exc:
        click.echo(f"permitgate: the gate at {gate.target} did not answer: {exc}", err=True)
        sys.exit(3)
    try:
        verified = verify_receipt(file.read().strip(), keys)
    except VerificationError as exc:
        click.echo(f"NOT VERIFIED: {exc}", err=True)
        sys.exit(1)
    registry_key = keys if isinstance(keys, VerifierKey) else keys.registry_key
    r = verified.receipt
    click.echo(
        f"verified: signed by gate key {verified.gate_key_id}; registry version "
        f"{verified.checkpoint.size} signed by {registry_key.keyid_text}"
    )
    if verified.statement is None:
        click.echo("  gate key: not vouched for in the receipt (verified with the KeySet's key)")
    else:
        click.echo(
            f"  gate key vouched for by the registry from "
            f"{format_time(verified.statement.not_before)}, valid until "
            f"{format_time(verified.statement.not_after)}"
        )
    click.echo(f"  decision {r.decision_id} at {format_time(r.decided_at)}: {r.verdict}")
    if r.valid_until is not None:
        click.echo(f"  decision valid until {format_time(r.valid_until)}")
    fresh = verified.data_fresh(max_age)
    age = verified.data_age
    if verified.cosigned_at is None or age is None:
        click.echo("  data: NOT shown fresh: the registry head carries no cosigned time")
    else:
        click.echo(
            f"  data: cosigned by the registry at {format_time(verified.cosigned_at)}, "
            f"{age.total_seconds():g} s before the decision: "
            + ("fresh" if fresh else "NOT fresh")
            + f" (max age {max_age.total_seconds():g} s)"
        )
    click.echo(f"  check: {orjson.dumps(r.check).decode()}")
    for reason in r.reasons:
        click.echo(
            f"  - {reason.get('code')} [Art. {reason.get('article')}]: {reason.get('message')}"
        )
    if r.status_record_sha256 is not None:
        click.echo(
            f"  status record sha256:{r.status_record_sha256} "
            f"(tree size {r.status_record_tree_size})"
        )
    else:
        click.echo("  status record: none (not in the registry, or not verified by the gate)")
    if require_fresh and not fresh:
        click.echo(
            f"NOT FRESH: the registry data is not shown to be at most "
            f"{max_age.total_seconds():g} s old at the decision",
            err=True,
        )
        sys.exit(1)


def _registry_key(data: bytes) -> VerifierKey:
    try:
        return VerifierKey.from_text(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"not a verifier key ({exc})") from exc
