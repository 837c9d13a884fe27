"""``permitgate department ...``: a department writes to the registry and reads it, as itself.

Each write command builds one statement, signs it with the department's key (``--key``) and
sends it over mutual TLS with the department's certificate (``--cert``, ``--cert-key``) to the
registry service (``--registry``, trusting ``--ca``); ``DepartmentClient`` does the work, this
module only turns options into calls and results into lines. Every option can come from the
environment (``DEPARTMENT_ENV``), so a department's shell sets them once::

    permitgate department open-case C-7 --structure 110228-0042-0007 \\
        --kind no_planning_permit --stage reported --source patrol
    permitgate department refer-case C-7 city-enforcement
    permitgate department referrals --overdue

One line per result (``--json``: one JSON object per line). Exit codes: ``DEPARTMENT_EXIT_CODES``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from permitgate_client import (
    CaseInfo,
    ConflictError,
    DepartmentClient,
    DepartmentKey,
    FailedPreconditionError,
    GateError,
    InvalidCheckError,
    NewStructure,
    NotFoundError,
    NoticeInfo,
    PartyInfo,
    PermissionDeniedError,
    PermitInfo,
    ReferralInfo,
    WriteResult,
)
from permitgate_client.formats import format_time, parse_time

from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus
from server.listen import ListenError, parse_target

DEFAULT_REGISTRY = "127.0.0.1:50061"
"""Where ``permitgate registry serve`` takes department calls by default (--departments-listen)."""

DEPARTMENT_ENV = {
    "--registry": "PERMITGATE_REGISTRY",
    "--key": "PERMITGATE_DEPARTMENT_KEY",
    "--cert": "PERMITGATE_DEPARTMENT_CERT",
    "--cert-key": "PERMITGATE_DEPARTMENT_CERT_KEY",
    "--ca": "PERMITGATE_REGISTRY_CA",
}
"""Where each connection option is read from when it is not given."""

REFUSED = 1
INVALID = 2
UNREACHABLE = 3

DEPARTMENT_EXIT_CODES = """\b
Exit codes:
  0  written (or read)
  1  the registry refused: not this department's remit (the rule is printed), no such
     record, an id already taken, or not in this state
  2  bad arguments, or a write the registry calls invalid (it names the field)
  3  the registry could not be reached or did not answer"""


# --- connecting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryAccess:
    """Where the registry is and who this department is: the options, checked."""

    target: str
    key: Path | None
    cert: Path
    cert_key: Path
    ca: Path | None

    def client(self, *, writes: bool = False) -> DepartmentClient:
        """A client; ``writes``: the signing key is required. A key file that cannot be read,
        or that belongs to another department than the certificate, is a bad option."""
        if writes and self.key is None:
            raise click.UsageError(
                f"--key (or {DEPARTMENT_ENV['--key']}): a write is signed with the department's key"
            )
        key = None
        if self.key is not None:
            try:
                key = DepartmentKey.load(self.key)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--key") from exc
        try:
            return DepartmentClient(
                self.target, key=key, cert=self.cert, cert_key=self.cert_key, ca=self.ca
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc


def _target(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return parse_target(value)
    except ListenError as exc:
        why = str(exc).partition(": ")[2] or str(exc)
        raise click.BadParameter(f"{value!r}: {why}") from exc


def registry_options(command: Callable[..., None]) -> Callable[..., None]:
    """--registry, --key, --cert, --cert-key, --ca and --json, handed to the command as
    ``access: RegistryAccess`` and ``as_json``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        registry: str,
        key: Path | None,
        cert: Path,
        cert_key: Path,
        ca: Path | None,
        **kwargs: Any,
    ) -> None:
        command(*args, access=RegistryAccess(registry, key, cert, cert_key, ca), **kwargs)

    file = click.Path(dir_okay=False, exists=True, path_type=Path)
    for option in (  # applied in turn, so listed by --help last to first
        click.option("--json", "as_json", is_flag=True, help="One JSON object per result."),
        click.option(
            "--ca",
            type=file,
            envvar=DEPARTMENT_ENV["--ca"],
            help="The CA of the registry's certificate (env PERMITGATE_REGISTRY_CA; default: "
            "the system's).",
        ),
        click.option(
            "--cert-key",
            type=file,
            required=True,
            envvar=DEPARTMENT_ENV["--cert-key"],
            help="The key of that certificate (env PERMITGATE_DEPARTMENT_CERT_KEY).",
        ),
        click.option(
            "--cert",
            type=file,
            required=True,
            envvar=DEPARTMENT_ENV["--cert"],
            help="The department's client certificate, its id as O (env "
            "PERMITGATE_DEPARTMENT_CERT).",
        ),
        click.option(
            "--key",
            type=file,
            envvar=DEPARTMENT_ENV["--key"],
            help="The department's signing key, <department>.key; writes need it (env "
            "PERMITGATE_DEPARTMENT_KEY).",
        ),
        click.option(
            "--registry",
            default=DEFAULT_REGISTRY,
            show_default=True,
            callback=_target,
            envvar=DEPARTMENT_ENV["--registry"],
            help="Where the registry service takes department calls, HOST:PORT (its "
            "--departments-listen; env PERMITGATE_REGISTRY).",
        ),
    ):
        wrapper = option(wrapper)
    return wrapper


def call(access: RegistryAccess, what: Callable[[], Any]) -> Any:
    """Run one call; each failure leaves as one line on stderr and its exit code."""
    try:
        return what()
    except InvalidCheckError as exc:
        click.echo(f"permitgate: invalid: {exc}", err=True)
        sys.exit(INVALID)
    except PermissionDeniedError as exc:
        click.echo(f"permitgate: refused: {exc}", err=True)
        sys.exit(REFUSED)
    except (NotFoundError, ConflictError, FailedPreconditionError) as exc:
        click.echo(f"permitgate: {exc}", err=True)
        sys.exit(REFUSED)
    except GateError as exc:
        click.echo(f"permitgate: the registry at {access.target} did not answer: {exc}", err=True)
        sys.exit(UNREACHABLE)


# --- showing results -------------------------------------------------------------------------


def jsonable(result: Any) -> Any:
    """A result dataclass as JSON values: times in RFC 3339, tuples as lists."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: jsonable(getattr(result, f.name)) for f in dataclasses.fields(result)}
    if isinstance(result, datetime):
        return format_time(result)
    if isinstance(result, tuple | list):
        return [jsonable(item) for item in result]
    return result


def _t(value: datetime | None) -> str:
    return "-" if value is None else format_time(value)


def permit_line(p: PermitInfo) -> str:
    extra = f"  expires {_t(p.expires)}" if p.expires else ""
    extra += f"  use {p.use}" if p.use else ""
    return f"permit {p.id}  {p.kind}  {p.status}  {p.structure_id}  issued {_t(p.issued)}{extra}"


def case_line(c: CaseInfo) -> str:
    party = ""
    if c.party:
        party = f"  party {c.party}{' SUSPENDED' if c.party_suspended else ''}"
    return (
        f"case {c.id}  {c.kind}  {c.stage}{' (blocking)' if c.blocking else ''}  "
        f"{c.structure_id}  district {c.district or '-'}  opened {_t(c.opened)}  "
        f"decider {c.decider or '-'}, lead {c.lead or '-'}{party}"
    )


def referral_line(r: ReferralInfo) -> str:
    parts = [
        f"referral {r.case_id}  {r.state}  {r.case_kind}  {r.structure_id}  "
        f"district {r.district or '-'}  found by {r.found_by} {_t(r.found_at)}"
    ]
    if r.referred_to:
        parts.append(f"to {r.referred_to} {_t(r.referred_at)}")
    else:
        parts.append(f"refer by {_t(r.referral_due)}")
    if r.decided_at is not None:
        parts.append(f"decided {r.decision} {_t(r.decided_at)}")
        if r.answered_at is None:
            parts.append(f"answer by {_t(r.answer_due)}")
    if r.overdue:
        parts.append(f"OVERDUE ({r.overdue})")
    return "  ".join(parts)


def notice_line(n: NoticeInfo, now: datetime | None = None) -> str:
    age = ""
    if n.created_at is not None:
        days = ((now or datetime.now(UTC)) - n.created_at).days
        age = f" ({days} day{'s' * (days != 1)} old)"
    acknowledged = f"  by {n.acknowledged_by} {_t(n.acknowledged_at)}" if n.acknowledged_at else ""
    return (
        f"notice {n.id}  {n.state}{acknowledged}  {n.office}  {n.structure_id}  "
        f"district {n.district or '-'}  application {n.application_id or '-'}  "
        f"created {_t(n.created_at)}{age}  reasons {', '.join(n.reasons) or '-'}"
    )


def party_line(p: PartyInfo) -> str:
    state = "SUSPENDED" if p.suspended else "not suspended"
    suspending = f"  suspended by {', '.join(p.suspending_cases)}" if p.suspending_cases else ""
    return f"party {p.id}  {state}  cases {', '.join(p.cases) or '-'}{suspending}"


def write_line(w: WriteResult) -> str:
    """One line for a write: what changed, and where it is in the log."""
    if w.case is not None:
        what = case_line(w.case)
    elif w.referral is not None:
        what = referral_line(w.referral)
    elif w.permit is not None:
        what = permit_line(w.permit)
    elif w.notice is not None:
        what = notice_line(w.notice)
    else:
        what = "-"
    replay = "  (replayed: written before under this request id)" if w.replayed else ""
    return (
        f"{w.action} by {w.department}: seq {w.seq}, registry version {w.registry_version}, "
        f"request {w.request_id}{replay}\n  {what}"
    )


LINES: dict[type, Callable[[Any], str]] = {
    WriteResult: write_line,
    PermitInfo: permit_line,
    CaseInfo: case_line,
    ReferralInfo: referral_line,
    NoticeInfo: notice_line,
    PartyInfo: party_line,
}


def show(results: Iterable[Any], as_json: bool, access: RegistryAccess) -> int:
    """Print each result as it comes (a list's pages are fetched while printing); how many."""
    n = 0
    iterator: Iterator[Any] = iter(results)
    while True:
        item = call(access, lambda: next(iterator, None))
        if item is None:
            return n
        n += 1
        if as_json:
            click.echo(orjson.dumps(jsonable(item)).decode())
        else:
            click.echo(LINES[type(item)](item))


# --- option types ----------------------------------------------------------------------------


class Time(click.ParamType[datetime, Any]):
    """An RFC 3339 time with its offset: ``2026-11-30T09:00:00+08:00``, ``2026-11-30T01:00Z``."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(f"{exc} (e.g. 2026-11-30T09:00:00+08:00)", param, ctx)


def _choice(values: Iterable[str]) -> click.Choice[str]:
    return click.Choice([str(v) for v in values])


request_id_option = click.option(
    "--request-id",
    help="The write's request id (default: a fresh UUID). The registry makes one write per "
    "department and request id: the same statement sent again is answered with the first "
    "result; another write under it is refused.",
)


# --- the commands ----------------------------------------------------------------------------


@click.group(epilog=DEPARTMENT_EXIT_CODES)
def department() -> None:
    """Write to the registry and read it as a department (signed statements over mutual TLS)."""


def _write(access: RegistryAccess, as_json: bool, method: str, *args: Any, **kwargs: Any) -> None:
    with access.client(writes=True) as client:
        result = call(access, lambda: getattr(client, method)(*args, **kwargs))
    show([result], as_json, access)


@department.command("issue-permit", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("permit_id")
@click.option("--structure", "structure_id", required=True, help="The structure's id.")
@click.option("--kind", type=_choice(PermitKind), required=True)
@click.option("--issued", type=Time(), required=True, help="When it was issued (RFC 3339).")
@click.option("--expires", type=Time(), help="When it expires, if it does.")
@click.option("--status", type=_choice(PermitStatus), default="valid", show_default=True)
@click.option("--use", help="The use it permits (e.g. residential).")
@request_id_option
@registry_options
def issue_permit(
    permit_id: str,
    structure_id: str,
    kind: str,
    issued: datetime,
    expires: datetime | None,
    status: str,
    use: str | None,
    request_id: str | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """Issue permit PERMIT_ID for a structure (only the kind's issuing department may)."""
    _write(
        access,
        as_json,
        "issue_permit",
        permit_id,
        structure_id=structure_id,
        kind=kind,
        issued=issued,
        expires=expires,
        status=status,
        use=use,
        request_id=request_id,
    )


@department.command("change-permit-status", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("permit_id")
@click.argument("status", type=_choice(PermitStatus))
@request_id_option
@registry_options
def change_permit_status(
    permit_id: str, status: str, request_id: str | None, access: RegistryAccess, as_json: bool
) -> None:
    """Suspend, revoke or restore (valid) permit PERMIT_ID."""
    _write(access, as_json, "change_permit_status", permit_id, status, request_id=request_id)


@department.command("open-case", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("case_id")
@click.option("--structure", "structure_id", required=True, help="The structure's id.")
@click.option("--kind", type=_choice(CaseKind), required=True)
@click.option(
    "--stage",
    type=_choice(CaseStage),
    default="reported",
    show_default=True,
    help="Outside the department's remit only 'reported' (then refer it, Art. 19).",
)
@click.option("--source", type=_choice(CaseSource), required=True)
@click.option("--opened", type=Time(), help="When the case was found (default: now).")
@click.option("--party", help="The builder or owner (an organisation id).")
@click.option(
    "--new-structure-area",
    "area",
    type=_choice(Area),
    help="The structure is not in the registry: create it, in this area (with --district).",
)
@click.option("--district", help="With --new-structure-area: the structure's district.")
@click.option("--address", help="With --new-structure-area: its address.")
@click.option("--declared-use", help="With --new-structure-area: its declared use.")
@request_id_option
@registry_options
def open_case(
    case_id: str,
    structure_id: str,
    kind: str,
    stage: str,
    source: str,
    opened: datetime | None,
    party: str | None,
    area: str | None,
    district: str | None,
    address: str | None,
    declared_use: str | None,
    request_id: str | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """Open case CASE_ID on a structure, as found (Art. 7, 19)."""
    structure = None
    if area is None:
        for name, value in (
            ("--district", district),
            ("--address", address),
            ("--declared-use", declared_use),
        ):
            if value is not None:
                raise click.BadParameter(
                    "describes a new structure: give --new-structure-area too", param_hint=name
                )
    else:
        if district is None:
            raise click.BadParameter("a new structure needs its district", param_hint="--district")
        structure = NewStructure(area, district, address, declared_use)
    _write(
        access,
        as_json,
        "open_case",
        case_id,
        structure_id,
        kind,
        stage,
        source,
        opened or datetime.now(UTC),
        party=party,
        structure=structure,
        request_id=request_id,
    )


@department.command("move-case", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("case_id")
@click.argument("stage", type=_choice(CaseStage))
@request_id_option
@registry_options
def move_case(
    case_id: str, stage: str, request_id: str | None, access: RegistryAccess, as_json: bool
) -> None:
    """File or decide case CASE_ID: move it to STAGE."""
    _write(access, as_json, "move_case", case_id, stage, request_id=request_id)


@department.command("refer-case", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("case_id")
@click.argument("to_department")
@request_id_option
@registry_options
def refer_case(
    case_id: str, to_department: str, request_id: str | None, access: RegistryAccess, as_json: bool
) -> None:
    """Refer case CASE_ID, found outside this department's remit, to TO_DEPARTMENT (Art. 19)."""
    _write(access, as_json, "refer_case", case_id, to_department, request_id=request_id)


@department.command("answer-referral", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("case_id")
@click.argument("answer")
@request_id_option
@registry_options
def answer_referral(
    case_id: str, answer: str, request_id: str | None, access: RegistryAccess, as_json: bool
) -> None:
    """Report the decision on referred case CASE_ID back to its finder (Art. 19)."""
    if not 1 <= len(answer.strip()) <= 2000:
        raise click.BadParameter("1 to 2000 characters", param_hint="ANSWER")
    _write(access, as_json, "answer_referral", case_id, answer, request_id=request_id)


@department.command("suspend-party", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("case_id")
@click.option("--lift", is_flag=True, help="Lift the suspension instead.")
@request_id_option
@registry_options
def suspend_party(
    case_id: str, lift: bool, request_id: str | None, access: RegistryAccess, as_json: bool
) -> None:
    """Suspend the party case CASE_ID names, its stop or demolition order ignored (Art. 22)."""
    _write(access, as_json, "suspend_party", case_id, not lift, request_id=request_id)


# --- reads -----------------------------------------------------------------------------------


def _get(access: RegistryAccess, as_json: bool, method: str, item_id: str) -> None:
    with access.client() as client:
        result = call(access, lambda: getattr(client, method)(item_id))
    show([result], as_json, access)


def _list(access: RegistryAccess, as_json: bool, limit: int | None, method: str, **kw: Any) -> None:
    with access.client() as client:
        items: Iterator[Any] = getattr(client, method)(**kw)
        n = show(_first(items, limit), as_json, access)
    if not as_json:
        click.echo(f"({n} shown)", err=True)


def _first(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            return
        yield item


limit_option = click.option("--limit", type=click.IntRange(min=1), help="Print at most this many.")
age_options = (
    click.option("--min-age-days", type=click.IntRange(min=0), help="At least this many days old."),
    click.option("--max-age-days", type=click.IntRange(min=1), help="At most this many days old."),
)


def _with(options: Iterable[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(command: Any) -> Any:
        for option in options:
            command = option(command)
        return command

    return apply


for _name, _method, _help in (
    ("permit", "get_permit", "Show permit ID."),
    ("case", "get_case", "Show case ID."),
    ("referral", "get_referral", "Show the referral of case ID."),
    ("notice", "get_notice", "Show notice ID."),
    ("party", "get_party", "Show party ID (an organisation id) and the cases naming it."),
):

    def _make(method: str) -> Callable[..., None]:
        def get(item_id: str, access: RegistryAccess, as_json: bool) -> None:
            _get(access, as_json, method, item_id)

        return get

    _command = _make(_method)
    _command.__doc__ = _help
    department.command(_name, epilog=DEPARTMENT_EXIT_CODES)(
        click.argument("item_id", metavar="ID")(registry_options(_command))
    )


@department.command(epilog=DEPARTMENT_EXIT_CODES)
@click.option("--structure", "structure_id")
@click.option("--kind", type=_choice(PermitKind))
@limit_option
@registry_options
def permits(
    structure_id: str | None,
    kind: str | None,
    limit: int | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """List permits (of a structure, of a kind)."""
    _list(access, as_json, limit, "permits", structure_id=structure_id, kind=kind)


@department.command(epilog=DEPARTMENT_EXIT_CODES)
@click.option("--structure", "structure_id")
@click.option("--district")
@click.option("--kind", type=_choice(CaseKind))
@click.option("--party")
@limit_option
@registry_options
def cases(
    structure_id: str | None,
    district: str | None,
    kind: str | None,
    party: str | None,
    limit: int | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """List cases (of a structure, district, kind or party)."""
    _list(
        access,
        as_json,
        limit,
        "cases",
        structure_id=structure_id,
        district=district,
        kind=kind,
        party=party,
    )


@department.command(epilog=DEPARTMENT_EXIT_CODES)
@click.option("--structure", "structure_id")
@click.option("--district")
@click.option(
    "--state", type=click.Choice(["awaiting_referral", "referred", "decided", "answered"])
)
@click.option("--department", "department_id", help="Found by or referred to this department.")
@click.option("--overdue", is_flag=True, help="Only those late (Art. 19: 2 working days).")
@_with(age_options)
@limit_option
@registry_options
def referrals(
    structure_id: str | None,
    district: str | None,
    state: str | None,
    department_id: str | None,
    overdue: bool,
    min_age_days: int | None,
    max_age_days: int | None,
    limit: int | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """List referrals of cases found outside their finder's remit (Art. 19)."""
    _list(
        access,
        as_json,
        limit,
        "referrals",
        structure_id=structure_id,
        district=district,
        state=state,
        department=department_id,
        overdue=overdue,
        min_age_days=min_age_days,
        max_age_days=max_age_days,
    )


@department.command(epilog=DEPARTMENT_EXIT_CODES)
@click.option("--structure", "structure_id")
@click.option("--district")
@click.option("--office")
@click.option("--state", type=click.Choice(["open", "acknowledged"]))
@_with(age_options)
@limit_option
@registry_options
def notices(
    structure_id: str | None,
    district: str | None,
    office: str | None,
    state: str | None,
    min_age_days: int | None,
    max_age_days: int | None,
    limit: int | None,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """List the licensing offices' notices to the working group (Art. 13)."""
    _list(
        access,
        as_json,
        limit,
        "notices",
        structure_id=structure_id,
        district=district,
        office=office,
        state=state,
        min_age_days=min_age_days,
        max_age_days=max_age_days,
    )


@department.command(epilog=DEPARTMENT_EXIT_CODES)
@limit_option
@registry_options
def parties(limit: int | None, access: RegistryAccess, as_json: bool) -> None:
    """List the parties cases name, and whether each is suspended (Art. 22)."""
    _list(access, as_json, limit, "parties")
