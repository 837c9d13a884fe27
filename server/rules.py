"""The decision rules of DOMAIN.md (Art. 11, 13, 22, 23) as pure functions over typed records.

Pure so that a verdict depends only on the status record, the request and ``now``: the rules read
as tables, are tested straight against DOMAIN.md, and are cheap on the gate's hot path. The caller
does the I/O and says whether its data is fresh (``stale``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Final

from registry.records import Case, Permit, StatusRecord, format_time
from registry.uses import same_use
from registry.vocabulary import (
    BLOCKING_OFFICES,
    BLOCKING_STAGES,
    NOTIFYING_OFFICES,
    PLANNING_PERMIT_NAMED,
    PLANNING_PERMITS,
    Area,
    CaseStage,
    ConnectionKind,
    Office,
    PermitKind,
    PermitStatus,
    RegistrationKind,
    Utility,
    party_key,
)

__all__ = [
    "ARTICLE_APPLICANT",
    "ARTICLE_CONNECTION",
    "ARTICLE_PREMISES",
    "ARTICLE_REGISTRATION",
    "TEMPORARY_CONNECTION_MAX",
    "Decision",
    "Reason",
    "ReasonCode",
    "Verdict",
    "decide_applicant",
    "decide_connection",
    "decide_premises",
    "decide_registration",
    "decide_unverified",
]


class Verdict(IntEnum):
    """The gate's answer; the value is its strength, and the strongest reason wins."""

    ALLOW = 0
    ALLOW_TEMPORARY = 1
    NOTIFY = 2
    REVIEW = 3
    DENY = 4


class ReasonCode(StrEnum):
    NOT_IN_REGISTRY = "NOT_IN_REGISTRY"
    MISSING_PERMIT = "MISSING_PERMIT"
    PERMIT_EXPIRED = "PERMIT_EXPIRED"
    PERMIT_SUSPENDED = "PERMIT_SUSPENDED"
    PERMIT_REVOKED = "PERMIT_REVOKED"
    STRUCTURE_FLAGGED = "STRUCTURE_FLAGGED"
    CASE_PENDING = "CASE_PENDING"
    USE_MISMATCH = "USE_MISMATCH"
    TEMPORARY_ONLY = "TEMPORARY_ONLY"
    REGISTRY_STALE = "REGISTRY_STALE"
    RECORD_UNVERIFIED = "RECORD_UNVERIFIED"
    PARTY_SUSPENDED = "PARTY_SUSPENDED"


ARTICLE_REGISTRATION: Final = 11
ARTICLE_PREMISES: Final = 13
ARTICLE_CONNECTION: Final = 23
ARTICLE_APPLICANT: Final = 22

TEMPORARY_CONNECTION_MAX: Final = timedelta(days=365)
"""The longest a construction-period connection may run, whatever the permits say."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that fired: its code, the article, and the permit kind or case it is about."""

    code: ReasonCode
    article: int
    message: str
    permit_kind: PermitKind | None = None
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict, every reason behind it, and (for ``ALLOW_TEMPORARY`` only) its end."""

    verdict: Verdict
    reasons: tuple[Reason, ...]
    valid_until: datetime | None = None


# --- What each check requires --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Need:
    """A required permit: met when any permit of ``kinds`` is in force; reasons name ``named``."""

    named: PermitKind
    kinds: frozenset[PermitKind]


def _need_of(kind: PermitKind) -> _Need:
    return _Need(kind, frozenset({kind}))


_PLANNING: Final[Mapping[Area, _Need]] = {
    area: _Need(PLANNING_PERMIT_NAMED[area], PLANNING_PERMITS[area]) for area in Area
}
_LAND_USE_PLANNING: Final = _need_of(PermitKind.LAND_USE_PLANNING)
_LAND_CERTIFICATE: Final = _need_of(PermitKind.LAND_CERTIFICATE)
_CONSTRUCTION_PLANNING: Final = _need_of(PermitKind.CONSTRUCTION_PLANNING)
_TEMPORARY_PLANNING: Final = _need_of(PermitKind.TEMPORARY_CONSTRUCTION_PLANNING)
_RURAL_PLANNING: Final = _need_of(PermitKind.RURAL_CONSTRUCTION_PLANNING)
_CONSTRUCTION_WORKS: Final = _need_of(PermitKind.CONSTRUCTION_WORKS)
_PROPERTY_OWNERSHIP: Final = _need_of(PermitKind.PROPERTY_OWNERSHIP)

# Art. 23, permanent. An urban construction_planning may be stood in for by an in-force
# temporary_construction_planning, which caps the answer at ALLOW_TEMPORARY (TEMPORARY_ONLY).
_PERMANENT_CONNECTION: Final[Mapping[Area, tuple[_Need, ...]]] = {
    Area.URBAN: (_LAND_USE_PLANNING, _LAND_CERTIFICATE, _CONSTRUCTION_PLANNING),
    Area.VILLAGE: (_RURAL_PLANNING,),
}
# Art. 23, temporary: the structure's planning permit, and construction approval.
_TEMPORARY_CONNECTION: Final[Mapping[Area, tuple[_Need, ...]]] = {
    area: (_PLANNING[area], _CONSTRUCTION_WORKS) for area in Area
}
# Art. 11. A temporary planning permit does not count for initial registration.
_REGISTRATION: Final[Mapping[RegistrationKind, Mapping[Area, tuple[_Need, ...]]]] = {
    RegistrationKind.INITIAL: {
        Area.URBAN: (_LAND_CERTIFICATE, _CONSTRUCTION_PLANNING),
        Area.VILLAGE: (_RURAL_PLANNING,),
    },
    RegistrationKind.TRANSFER: {area: (_PROPERTY_OWNERSHIP,) for area in Area},
    RegistrationKind.MORTGAGE: {area: (_PROPERTY_OWNERSHIP,) for area in Area},
}
# Art. 13: blocking offices check the planning permit; notifying offices also the property
# certificate. Both compare the declared use with the permitted use.
_PREMISES_BLOCKING: Final[Mapping[Area, tuple[_Need, ...]]] = {
    area: (_PLANNING[area],) for area in Area
}
_PREMISES_NOTIFYING: Final[Mapping[Area, tuple[_Need, ...]]] = {
    area: (_PLANNING[area], _PROPERTY_OWNERSHIP) for area in Area
}

# --- The verdict each reason calls for -----------------------------------------------------------

_STRICT: Final[Mapping[ReasonCode, Verdict]] = {
    ReasonCode.NOT_IN_REGISTRY: Verdict.DENY,
    ReasonCode.MISSING_PERMIT: Verdict.DENY,
    ReasonCode.PERMIT_EXPIRED: Verdict.DENY,
    ReasonCode.PERMIT_SUSPENDED: Verdict.DENY,
    ReasonCode.PERMIT_REVOKED: Verdict.DENY,
    ReasonCode.STRUCTURE_FLAGGED: Verdict.DENY,
    ReasonCode.CASE_PENDING: Verdict.REVIEW,
    ReasonCode.USE_MISMATCH: Verdict.DENY,
    ReasonCode.TEMPORARY_ONLY: Verdict.ALLOW_TEMPORARY,
    ReasonCode.REGISTRY_STALE: Verdict.REVIEW,
    ReasonCode.RECORD_UNVERIFIED: Verdict.REVIEW,
    ReasonCode.PARTY_SUSPENDED: Verdict.DENY,
}
"""Connections, registrations and blocking offices (and applicants, Art. 22)."""

_CANNOT_TELL: Final = frozenset({ReasonCode.REGISTRY_STALE, ReasonCode.RECORD_UNVERIFIED})
_NOTIFYING: Final[Mapping[ReasonCode, Verdict]] = {
    code: Verdict.REVIEW if code in _CANNOT_TELL else Verdict.NOTIFY for code in ReasonCode
}
"""Notifying offices never block: every finding is a notification; data the gate cannot show
to be fresh or genuine is REVIEW."""

_ARTICLES: Final = (ARTICLE_REGISTRATION, ARTICLE_PREMISES, ARTICLE_CONNECTION, ARTICLE_APPLICANT)
_ALLOW: Final = Decision(Verdict.ALLOW, ())
_STALE: Final[Mapping[int, Reason]] = {
    article: Reason(
        ReasonCode.REGISTRY_STALE,
        article,
        "registry data not shown to be fresh: no ALLOW on stale data",
    )
    for article in _ARTICLES
}


def _unknown(article: int, table: Mapping[ReasonCode, Verdict]) -> Decision:
    reason = Reason(ReasonCode.NOT_IN_REGISTRY, article, "structure not in the registry")
    return Decision(table[reason.code], (reason,))


def _unknown_on_stale_data(article: int) -> Decision:
    reason = Reason(
        ReasonCode.REGISTRY_STALE,
        article,
        "structure not held, on registry data not shown to be fresh: it may have been added since",
    )
    return Decision(Verdict.REVIEW, (reason,))


# (article, notifying?, stale?) -> the whole answer for a structure the gate does not hold. On
# stale (or never loaded) data the gate cannot tell whether the structure was added since, so it
# does not claim NOT_IN_REGISTRY: REVIEW + REGISTRY_STALE only, for notifying offices as well.
_UNKNOWN: Final[Mapping[tuple[int, bool, bool], Decision]] = {
    (article, notifying, stale): _unknown_on_stale_data(article)
    if stale
    else _unknown(article, _NOTIFYING if notifying else _STRICT)
    for article in _ARTICLES
    for notifying in (False, True)
    for stale in (False, True)
}


_UNVERIFIED: Final[Mapping[int, Decision]] = {
    article: Decision(
        Verdict.REVIEW,
        (
            Reason(
                ReasonCode.RECORD_UNVERIFIED,
                article,
                "the registry's newest record of this structure could not be verified",
            ),
        ),
    )
    for article in _ARTICLES
}


def decide_unverified(article: int) -> Decision:
    """The registry holds the structure but the gate cannot verify its newest record (forged,
    withheld, rolled back, or older than the structure's last change in the log): REVIEW with
    RECORD_UNVERIFIED only.

    Neither NOT_IN_REGISTRY (the log says it exists) nor any rule over an older record, and not
    REGISTRY_STALE either, which stays for data that is genuine but not provably fresh.
    """
    return _UNVERIFIED[article]


# --- The checks ----------------------------------------------------------------------------------


def decide_connection(
    status: StatusRecord | None,
    *,
    utility: Utility,
    kind: ConnectionKind,
    now: datetime,
    requested_until: datetime | None = None,
    stale: bool = False,
) -> Decision:
    """Art. 23: may ``utility`` connect this structure, permanently or for construction?

    A temporary connection is at best ``ALLOW_TEMPORARY`` until the earliest of
    ``requested_until``, the expiry of each permit relied on, and ``now`` + 365 days.
    """
    if utility not in _UTILITIES:
        raise ValueError(f"unknown utility: {utility!r}")
    if kind not in _CONNECTION_KINDS:
        raise ValueError(f"unknown connection kind: {kind!r}")
    article = ARTICLE_CONNECTION
    if status is None:
        return _UNKNOWN[article, False, stale]
    reasons = _common_reasons(status.cases, article, stale)
    permits, area = status.permits, status.structure.area
    until: datetime | None
    if kind == ConnectionKind.PERMANENT:
        until = None
        for need in _PERMANENT_CONNECTION[area]:
            if _in_force(permits, need.kinds, now):
                continue
            if need is _CONSTRUCTION_PLANNING:
                temporary = _relied_on(permits, _TEMPORARY_PLANNING.kinds, now)
                if temporary is not None:
                    until = temporary.expires
                    reasons.append(_temporary_only(article, temporary))
                    continue
            reasons.append(_missing(article, need, permits, now))
        return _finish(reasons, _STRICT, Verdict.ALLOW, until)

    until = now + TEMPORARY_CONNECTION_MAX
    if requested_until is not None and requested_until < until:
        until = requested_until
    for need in _TEMPORARY_CONNECTION[area]:
        relied = _relied_on(permits, need.kinds, now)
        if relied is None:
            reasons.append(_missing(article, need, permits, now))
        elif relied.expires is not None and relied.expires < until:
            until = relied.expires
    return _finish(reasons, _STRICT, Verdict.ALLOW_TEMPORARY, until)


def decide_registration(
    status: StatusRecord | None,
    *,
    kind: RegistrationKind,
    now: datetime,
    stale: bool = False,
) -> Decision:
    """Art. 11: may the registry record an initial registration, a transfer or a mortgage?"""
    needs_by_area = _REGISTRATION.get(kind)
    if needs_by_area is None:
        raise ValueError(f"unknown registration kind: {kind!r}")
    article = ARTICLE_REGISTRATION
    if status is None:
        return _UNKNOWN[article, False, stale]
    reasons = _common_reasons(status.cases, article, stale)
    permits = status.permits
    for need in needs_by_area[status.structure.area]:
        if not _in_force(permits, need.kinds, now):
            reasons.append(_missing(article, need, permits, now))
    return _finish(reasons, _STRICT, Verdict.ALLOW, None)


def decide_premises(
    status: StatusRecord | None,
    *,
    office: Office,
    declared_use: str,
    now: datetime,
    stale: bool = False,
) -> Decision:
    """Art. 13: may a blocking office issue its permit; must a notifying office tell the group?

    ``declared_use`` is required; it is compared with the permitted use by category when both
    are uses of the vocabulary (``registry.uses``: "住宅" is "residential"), otherwise as text:
    case-insensitively, ignoring surrounding white space.
    """
    if office in NOTIFYING_OFFICES:
        notifying, table, needs = True, _NOTIFYING, _PREMISES_NOTIFYING
    elif office in BLOCKING_OFFICES:
        notifying, table, needs = False, _STRICT, _PREMISES_BLOCKING
    else:
        raise ValueError(f"unknown office: {office!r}")
    declared = declared_use.strip()
    if not declared:
        raise ValueError("declared_use is required")
    article = ARTICLE_PREMISES
    if status is None:
        return _UNKNOWN[article, notifying, stale]
    reasons = _common_reasons(status.cases, article, stale)
    permits, area = status.permits, status.structure.area
    for need in needs[area]:
        if not _in_force(permits, need.kinds, now):
            reasons.append(_missing(article, need, permits, now))
    # The declared use must agree with what the planning permit *and* the property certificate
    # record: each document that names a use and differs adds its own reason.
    for kinds in (_PLANNING[area].kinds, _PROPERTY_OWNERSHIP.kinds):
        source = _use_source(permits, kinds, now)
        if source is None:
            continue
        permitted = source.use.strip() if source.use is not None else ""
        if not same_use(permitted, declared):
            reasons.append(
                Reason(
                    ReasonCode.USE_MISMATCH,
                    article,
                    f"declared use {declared!r} differs from permitted use {permitted!r}"
                    f" ({source.kind} {source.id})",
                    permit_kind=source.kind,
                )
            )
    return _finish(reasons, table, Verdict.ALLOW, None)


def decide_applicant(
    cases_naming_party: Iterable[Case],
    now: datetime,
    stale: bool,
    *,
    party: str | None = None,
    unverified: Collection[str] = (),
) -> Decision:
    """Art. 22: may planning (or housing) accept an application of this party?

    ``cases_naming_party``: every case of a verified record that names the party (the caller
    proves there are no others); with ``party``, a case naming another party is not counted.

    DENY with a PARTY_SUSPENDED per case that suspends the party (``Case.suspends_party``: the
    party ignored a stop or demolition order, and the case still blocks), in case id order; a
    case naming the party that does not suspend it (not suspended, or closed, rectified,
    demolished, only reported) changes nothing. On data not shown to be fresh, REGISTRY_STALE
    (REVIEW at best: a suspension may have been added since). The structures in
    ``unverified`` have a current record the gate cannot verify, which may name the party:
    RECORD_UNVERIFIED (REVIEW at best), never ALLOW. ``now`` is when the question is asked; no
    part of the rule depends on it yet (a suspension has no end date of its own).
    """
    article = ARTICLE_APPLICANT
    reasons = [_STALE[article]] if stale else []
    if unverified:
        shown = sorted(unverified)
        more = (
            f" and {len(shown) - _SHOWN_UNVERIFIED} more" if len(shown) > _SHOWN_UNVERIFIED else ""
        )
        reasons.append(
            Reason(
                ReasonCode.RECORD_UNVERIFIED,
                article,
                "the current records of structures "
                f"{', '.join(shown[:_SHOWN_UNVERIFIED])}{more} could not be verified: they may"
                " name the party",
            )
        )
    asked = None if party is None else party_key(party)
    suspending = sorted(
        (
            c
            for c in cases_naming_party
            if c.suspends_party
            and (asked is None or (c.party is not None and party_key(c.party) == asked))
        ),
        key=_case_id,
    )
    for case in suspending:
        reasons.append(
            Reason(
                ReasonCode.PARTY_SUSPENDED,
                article,
                f"party {case.party} ignored the order of case {case.id} ({case.stage}, structure"
                f" {case.structure}): its other applications are suspended",
                case_id=case.id,
            )
        )
    return _finish(reasons, _STRICT, Verdict.ALLOW, None)


_SHOWN_UNVERIFIED: Final = 10


def _case_id(case: Case) -> str:
    return case.id


# --- Shared helpers ------------------------------------------------------------------------------

_UTILITIES: Final[frozenset[str]] = frozenset(Utility)
_CONNECTION_KINDS: Final[frozenset[str]] = frozenset(ConnectionKind)


def _common_reasons(cases: Sequence[Case], article: int, stale: bool) -> list[Reason]:
    """The reasons common to every check, in order: REGISTRY_STALE, then a STRUCTURE_FLAGGED per
    blocking case or, when no case blocks, a CASE_PENDING per ``reported`` case (record order)."""
    reasons = [_STALE[article]] if stale else []
    blocked = False
    for case in cases:
        if case.stage in BLOCKING_STAGES:
            blocked = True
            reasons.append(
                Reason(
                    ReasonCode.STRUCTURE_FLAGGED,
                    article,
                    f"structure flagged by case {case.id} ({case.stage})",
                    case_id=case.id,
                )
            )
    if not blocked:
        for case in cases:
            if case.stage is CaseStage.REPORTED:
                reasons.append(
                    Reason(
                        ReasonCode.CASE_PENDING,
                        article,
                        f"case {case.id} reported, not yet verified",
                        case_id=case.id,
                    )
                )
    return reasons


def _finish(
    reasons: list[Reason],
    table: Mapping[ReasonCode, Verdict],
    floor: Verdict,
    until: datetime | None,
) -> Decision:
    """The strongest verdict any reason calls for (at least ``floor``); ``until`` only counts
    when that verdict is ALLOW_TEMPORARY."""
    if not reasons and floor is Verdict.ALLOW:
        return _ALLOW
    verdict = floor
    for reason in reasons:
        called = table[reason.code]
        if called > verdict:
            verdict = called
    return Decision(verdict, tuple(reasons), until if verdict is Verdict.ALLOW_TEMPORARY else None)


def _in_force(permits: Sequence[Permit], kinds: frozenset[PermitKind], now: datetime) -> bool:
    # A plain loop rather than any(...): no generator object on the hot path.
    for permit in permits:  # noqa: SIM110
        if permit.kind in kinds and permit.in_force(now):
            return True
    return False


def _relied_on(
    permits: Sequence[Permit], kinds: frozenset[PermitKind], now: datetime
) -> Permit | None:
    """The in-force permit of ``kinds`` that expires last (no expiry: never), or None."""
    best: Permit | None = None
    best_expires: datetime | None = None
    for permit in permits:
        if permit.kind not in kinds or not permit.in_force(now):
            continue
        expires = permit.expires
        if expires is None:
            return permit
        if (
            best is None
            or best_expires is None
            or expires > best_expires
            or (expires == best_expires and permit.id > best.id)
        ):
            best, best_expires = permit, expires
    return best


def _use_source(
    permits: Sequence[Permit], kinds: frozenset[PermitKind], now: datetime
) -> Permit | None:
    """The latest-issued in-force permit of ``kinds`` that names a use, or None."""
    best: Permit | None = None
    for permit in permits:
        if (
            permit.kind in kinds
            and permit.use is not None
            and permit.use.strip()
            and permit.in_force(now)
            and (best is None or _issued_later(permit, best))
        ):
            best = permit
    return best


def _issued_later(a: Permit, b: Permit) -> bool:
    """Order by ``issued``, then by id (the larger wins a tie)."""
    return a.issued > b.issued or (a.issued == b.issued and a.id > b.id)


def _missing(article: int, need: _Need, permits: Sequence[Permit], now: datetime) -> Reason:
    """The reason for a requirement with nothing in force, read off its latest-issued permit."""
    latest: Permit | None = None
    for permit in permits:
        if permit.kind in need.kinds and (latest is None or _issued_later(permit, latest)):
            latest = permit
    named = need.named
    head = f"no {named} in force"
    if latest is None:
        return Reason(ReasonCode.MISSING_PERMIT, article, f"{head}: none on record", named)
    which = latest.id if latest.kind is named else f"{latest.id} ({latest.kind})"
    if latest.status is PermitStatus.REVOKED:
        code, why = ReasonCode.PERMIT_REVOKED, "was revoked"
    elif latest.status is PermitStatus.SUSPENDED:
        code, why = ReasonCode.PERMIT_SUSPENDED, "is suspended"
    elif latest.expires is not None and latest.expires <= now:
        code, why = ReasonCode.PERMIT_EXPIRED, f"expired {format_time(latest.expires)}"
    else:  # valid, not expired, yet not in force: issued in the future
        code, why = ReasonCode.MISSING_PERMIT, f"not in force until {format_time(latest.issued)}"
    return Reason(code, article, f"{head}: permit {which} {why}", named)


def _temporary_only(article: int, permit: Permit) -> Reason:
    until = "no expiry" if permit.expires is None else f"until {format_time(permit.expires)}"
    return Reason(
        ReasonCode.TEMPORARY_ONLY,
        article,
        f"no {PermitKind.CONSTRUCTION_PLANNING} in force;"
        f" only temporary permit {permit.id} ({until})",
        PermitKind.TEMPORARY_CONSTRUCTION_PLANNING,
    )
