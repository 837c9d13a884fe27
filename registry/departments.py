"""Who may write what: the departments' remits from the seed's Art. 8-13 and 20, as one table.

Every department write (``registry.department_writes``) is checked here and nowhere else, and the
README prints the same table (``remit_table``). A refusal names the rule it rests on, so the
caller's ``PERMISSION_DENIED`` says why in the seed's words:

* **planning** (Art. 9) issues the planning permits of cities and towns and files and decides the
  construction cases: deviating from a permit, changing the permitted use, temporary building
  not removed in time;
* **land** (Art. 8) issues land certificates and handles illegal land use;
* **housing** (Art. 11) issues construction works permits and property certificates and handles
  works, quality and property cases (building after registration, damage to the structure);
* **enforcement** (urban management, Art. 10) files and decides building without a planning
  permit;
* **township** governments issue rural planning permits;
* the **working group** (Art. 6, 7, 13) acknowledges the notices in its inbox;
* **utilities** and **licensing** offices only read (Art. 13, 23).

Any department that finds a case may open it (Art. 19, first finder); outside its remit only as
``reported``, and it must then refer it to a department whose remit it is. The lead department
of a case follows from its kind (Art. 20): land use first, then construction, then works.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from registry.vocabulary import CaseKind, CaseStage, PermitKind

__all__ = [
    "CASE_REMIT",
    "DECISION_STAGES",
    "FINDERS",
    "LEAD",
    "ORDER_STAGES",
    "PERMIT_ISSUER",
    "REFERRAL_DAYS",
    "Action",
    "Refusal",
    "Role",
    "in_remit",
    "may_acknowledge",
    "may_change_permit",
    "may_issue_permit",
    "may_move_case",
    "may_open_case",
    "may_receive_referral",
    "may_suspend_party",
    "remit_table",
]


class Role(StrEnum):
    """What a department is, which fixes what it may write."""

    PLANNING = "planning"  # 规划部门
    LAND = "land"  # 国土部门
    HOUSING = "housing"  # 住房城乡建设部门
    ENFORCEMENT = "enforcement"  # 城市管理综合执法机关
    TOWNSHIP = "township"  # 乡镇政府
    WORKING_GROUP = "working_group"  # 联席会议工作小组
    UTILITY = "utility"  # 市政公用服务单位
    LICENSING = "licensing"  # 工商、文化、卫生、税务等


class Action(StrEnum):
    """The writes a department can make; each is one RPC of the Registry service."""

    ISSUE_PERMIT = "issue_permit"
    CHANGE_PERMIT_STATUS = "change_permit_status"
    OPEN_CASE = "open_case"
    MOVE_CASE = "move_case"
    REFER_CASE = "refer_case"
    ANSWER_REFERRAL = "answer_referral"
    ACKNOWLEDGE_NOTICE = "acknowledge_notice"
    SUSPEND_PARTY = "suspend_party"


PERMIT_ISSUER: Final[dict[PermitKind, Role]] = {
    PermitKind.LAND_USE_PLANNING: Role.PLANNING,
    PermitKind.CONSTRUCTION_PLANNING: Role.PLANNING,
    PermitKind.TEMPORARY_CONSTRUCTION_PLANNING: Role.PLANNING,
    PermitKind.LAND_CERTIFICATE: Role.LAND,
    PermitKind.RURAL_CONSTRUCTION_PLANNING: Role.TOWNSHIP,
    PermitKind.CONSTRUCTION_WORKS: Role.HOUSING,
    PermitKind.PROPERTY_OWNERSHIP: Role.HOUSING,
}
"""The one department that issues, suspends and revokes each kind of permit."""

CASE_REMIT: Final[dict[CaseKind, Role]] = {
    CaseKind.ILLEGAL_LAND_USE: Role.LAND,
    CaseKind.NO_PLANNING_PERMIT: Role.ENFORCEMENT,
    CaseKind.DEVIATES_FROM_PERMIT: Role.PLANNING,
    CaseKind.UNAUTHORIZED_USE_CHANGE: Role.PLANNING,
    CaseKind.TEMPORARY_OVERDUE: Role.PLANNING,
    CaseKind.POST_REGISTRATION_CONSTRUCTION: Role.HOUSING,
    CaseKind.STRUCTURAL_DAMAGE: Role.HOUSING,
}
"""The department that files and decides each kind of case (Art. 8-11)."""

LEAD: Final[dict[CaseKind, Role]] = {
    CaseKind.ILLEGAL_LAND_USE: Role.LAND,
    CaseKind.NO_PLANNING_PERMIT: Role.PLANNING,
    CaseKind.DEVIATES_FROM_PERMIT: Role.PLANNING,
    CaseKind.UNAUTHORIZED_USE_CHANGE: Role.PLANNING,
    CaseKind.TEMPORARY_OVERDUE: Role.PLANNING,
    CaseKind.POST_REGISTRATION_CONSTRUCTION: Role.HOUSING,
    CaseKind.STRUCTURAL_DAMAGE: Role.HOUSING,
}
"""The lead department of each kind of case (Art. 20): land for illegal land use, planning for
illegal construction, housing for works, quality and property."""

FINDERS: Final[frozenset[Role]] = frozenset(
    {Role.PLANNING, Role.LAND, Role.HOUSING, Role.ENFORCEMENT, Role.TOWNSHIP}
)
"""Departments that find and open cases (Art. 19: the first finder)."""

ORDER_STAGES: Final[frozenset[CaseStage]] = frozenset(
    {CaseStage.STOP_ORDER, CaseStage.DEMOLITION_ORDER}
)
"""The orders whose being ignored lets the party be suspended (Art. 22)."""

DECISION_STAGES: Final[frozenset[CaseStage]] = frozenset(
    {
        CaseStage.STOP_ORDER,
        CaseStage.RECTIFY_ORDER,
        CaseStage.DEMOLITION_ORDER,
        CaseStage.CLOSED,
        CaseStage.DISMISSED,
    }
)
"""Stages that are a receiving department's decision on a referred case (Art. 19: reported back
within 2 working days)."""
REFERRAL_DAYS: Final = 2
"""Art. 19: working days to refer a case found outside one's remit, and to report back."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a department may not make a write: the rule, with its article."""

    rule: str

    def __str__(self) -> str:
        return self.rule


def in_remit(role: Role, kind: CaseKind) -> bool:
    """True when ``role`` files and decides cases of ``kind``."""
    return CASE_REMIT[kind] is role


def may_issue_permit(role: Role, kind: PermitKind) -> Refusal | None:
    """Issuing a permit of ``kind``."""
    issuer = PERMIT_ISSUER[kind]
    if role is issuer:
        return None
    return Refusal(f"{_ISSUER_RULE[issuer]} issues {kind.value} permits, not {role.value}")


def may_change_permit(role: Role, kind: PermitKind) -> Refusal | None:
    """Suspending, revoking or restoring a permit of ``kind``: only its issuer."""
    issuer = PERMIT_ISSUER[kind]
    if role is issuer:
        return None
    return Refusal(
        f"{_ISSUER_RULE[issuer]} issues {kind.value} permits, so only it changes their "
        f"status, not {role.value}"
    )


def may_open_case(role: Role, kind: CaseKind, stage: CaseStage) -> Refusal | None:
    """Opening a case of ``kind`` at ``stage``: any finder; outside its remit only as reported
    (it must then refer the case, Art. 19)."""
    if role not in FINDERS:
        return Refusal(f"Art. 13, 23: {role.value} departments only read the registry")
    if in_remit(role, kind) or stage is CaseStage.REPORTED:
        return None
    decider = CASE_REMIT[kind]
    return Refusal(
        f"Art. 19: {kind.value} cases are {decider.value}'s remit ({_CASE_RULE[decider]}); "
        f"{role.value} opens them as reported and refers them within 2 working days"
    )


def may_move_case(role: Role, kind: CaseKind) -> Refusal | None:
    """Filing or deciding a case of ``kind`` (moving it to another stage)."""
    if in_remit(role, kind):
        return None
    decider = CASE_REMIT[kind]
    return Refusal(
        f"{_CASE_RULE[decider]}: {kind.value} cases are filed and decided by {decider.value}, "
        f"not {role.value}"
    )


def may_receive_referral(role: Role, kind: CaseKind) -> Refusal | None:
    """A referral of a case of ``kind`` goes to the department whose remit it is."""
    if in_remit(role, kind):
        return None
    decider = CASE_REMIT[kind]
    return Refusal(
        f"Art. 19: a {kind.value} case is referred to the department with jurisdiction "
        f"({decider.value}, {_CASE_RULE[decider]}), not to {role.value}"
    )


def may_suspend_party(role: Role, kind: CaseKind) -> Refusal | None:
    """Saying a party ignored an order (and lifting that): the case's deciding department."""
    if in_remit(role, kind):
        return None
    decider = CASE_REMIT[kind]
    return Refusal(
        f"Art. 22: only the department that decided the order ({decider.value} for "
        f"{kind.value} cases) says it was ignored, not {role.value}"
    )


def may_acknowledge(role: Role) -> Refusal | None:
    """Acknowledging a notice in the working group's inbox."""
    if role is Role.WORKING_GROUP:
        return None
    return Refusal(
        f"Art. 13: notices go to the working group, which acknowledges them, not {role.value}"
    )


_ISSUER_RULE: Final[dict[Role, str]] = {
    Role.PLANNING: "Art. 9: planning",
    Role.LAND: "Art. 8: land",
    Role.HOUSING: "Art. 11: housing and construction",
    Role.TOWNSHIP: "the township government",
}
_CASE_RULE: Final[dict[Role, str]] = {
    Role.PLANNING: "Art. 9",
    Role.LAND: "Art. 8",
    Role.HOUSING: "Art. 11",
    Role.ENFORCEMENT: "Art. 10",
}


def remit_table() -> list[tuple[str, str, str]]:
    """(role, may write, rule) rows: the table the README shows, made from the tables above."""
    rows: list[tuple[str, str, str]] = []
    for role in Role:
        permits = [k.value for k, r in PERMIT_ISSUER.items() if r is role]
        cases = [k.value for k, r in CASE_REMIT.items() if r is role]
        parts: list[str] = []
        if permits:
            parts.append("issues and changes " + ", ".join(permits))
        if cases:
            parts.append("files and decides " + ", ".join(cases) + ", and suspends their parties")
        if role in FINDERS:
            parts.append("opens any case it finds (others as reported, then refers them)")
        if role is Role.WORKING_GROUP:
            parts.append("acknowledges notices")
        if not parts:
            parts.append("reads only")
        rule = (
            _ISSUER_RULE.get(role)
            or (f"{_CASE_RULE[role]}: {role.value}" if role in _CASE_RULE else None)
            or {"working_group": "Art. 6, 7, 13", "utility": "Art. 23", "licensing": "Art. 13"}[
                role.value
            ]
        )
        rows.append((role.value, "; ".join(parts), rule.split(":")[0]))
    return rows
