"""A deterministic demo registry in which every decision rule of DOMAIN.md fires somewhere.

Structure ``i`` (id ``structure_id(i)``) follows scenario ``i % len(SCENARIOS)``, so the first
``len(SCENARIOS)`` structures show one scenario each, for the demo's "try these" lines. Dates are
relative to ``now`` so the data means the same whenever it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.records import format_time

__all__ = ["SCENARIOS", "Scenario", "demo_lines", "structure_id"]

_DISTRICTS = ("110228", "110105", "110108", "110114", "110116")
_USES = ("residential", "commercial", "industrial", "office", "warehouse")

Emit = Callable[..., None]


@dataclass(frozen=True)
class Scenario:
    name: str
    area: str
    build: Callable[[Emit, Emit, datetime], None]  # (permit, case, now)


def _day(now: datetime, days: int) -> str:
    base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return format_time(base + timedelta(days=days))


def _full_urban(permit: Emit, now: datetime, *, skip: str = "", use: str = "residential") -> None:
    for kind in ("land_use_planning", "land_certificate", "construction_planning"):
        if kind != skip:
            permit(
                kind,
                "valid",
                _day(now, -900),
                None,
                use if kind == "construction_planning" else None,
            )


def _urban_ok(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now)
    permit("property_ownership", "valid", _day(now, -400), None, "residential")


def _status(status: str) -> Callable[[Emit, Emit, datetime], None]:
    def build(permit: Emit, case: Emit, now: datetime) -> None:
        _full_urban(permit, now, skip="construction_planning")
        permit("construction_planning", status, _day(now, -900), None, "residential")

    return build


def _expired(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now, skip="construction_planning")
    permit("construction_planning", "valid", _day(now, -900), _day(now, -30), "residential")


def _missing_certificate(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now, skip="land_certificate")


def _temporary_only(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now, skip="construction_planning")
    permit("temporary_construction_planning", "valid", _day(now, -60), _day(now, 120), "office")


def _under_construction(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now)
    permit("construction_works", "valid", _day(now, -30), _day(now, 200), None)


def _flagged(permit: Emit, case: Emit, now: datetime) -> None:
    _urban_ok(permit, case, now)
    case("deviates_from_permit", "stop_order", "patrol", _day(now, -10))


def _reported(permit: Emit, case: Emit, now: datetime) -> None:
    _urban_ok(permit, case, now)
    case("unauthorized_use_change", "reported", "satellite", _day(now, -3))


def _closed_case(permit: Emit, case: Emit, now: datetime) -> None:
    _urban_ok(permit, case, now)
    case("illegal_land_use", "closed", "report", _day(now, -300))


def _use_changed(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now)
    permit("property_ownership", "valid", _day(now, -400), None, "warehouse")


def _not_yet_issued(permit: Emit, case: Emit, now: datetime) -> None:
    _full_urban(permit, now, skip="land_use_planning")
    permit("land_use_planning", "valid", _day(now, 30), None, None)


def _village_ok(permit: Emit, case: Emit, now: datetime) -> None:
    permit("rural_construction_planning", "valid", _day(now, -700), None, "residential")
    permit("property_ownership", "valid", _day(now, -500), None, "residential")


def _village_missing(permit: Emit, case: Emit, now: datetime) -> None:
    permit("property_ownership", "valid", _day(now, -500), None, "residential")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("urban, every permit in force", "urban", _urban_ok),
    Scenario("urban, construction planning permit revoked", "urban", _status("revoked")),
    Scenario("urban, construction planning permit suspended", "urban", _status("suspended")),
    Scenario("urban, construction planning permit expired", "urban", _expired),
    Scenario("urban, no land certificate", "urban", _missing_certificate),
    Scenario("urban, temporary construction planning permit only", "urban", _temporary_only),
    Scenario("urban, under construction (construction works permit)", "urban", _under_construction),
    Scenario("urban, stop order (blocking case)", "urban", _flagged),
    Scenario("urban, reported lead (pending case)", "urban", _reported),
    Scenario("urban, closed case", "urban", _closed_case),
    Scenario("urban, property certificate names another use (warehouse)", "urban", _use_changed),
    Scenario("urban, land use planning permit not yet issued", "urban", _not_yet_issued),
    Scenario("village, rural construction planning permit in force", "village", _village_ok),
    Scenario("village, no rural construction planning permit", "village", _village_missing),
)


def structure_id(i: int) -> str:
    return f"{_DISTRICTS[(i // len(SCENARIOS)) % len(_DISTRICTS)]}-{i // 10000:04d}-{i % 10000:04d}"


def demo_lines(structures: int, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Records for ``structures`` structures, each followed by its permits and cases."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    for i in range(structures):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        sid = structure_id(i)
        district = sid.split("-", 1)[0]
        out: list[dict[str, Any]] = [
            {
                "type": "structure",
                "id": sid,
                "area": scenario.area,
                "district": district,
                "address": f"No. {i % 997 + 1}, demo road {i // 997 + 1}",
                "declared_use": _USES[i % len(_USES)],
            }
        ]

        def permit(
            kind: str,
            status: str,
            issued: str,
            expires: str | None,
            use: str | None,
            sid: str = sid,
            out: list[dict[str, Any]] = out,
        ) -> None:
            rec: dict[str, Any] = {
                "type": "permit",
                "id": f"P-{sid}-{len(out)}",
                "structure": sid,
                "kind": kind,
                "status": status,
                "issued": issued,
            }
            if expires is not None:
                rec["expires"] = expires
            if use is not None:
                rec["use"] = use
            out.append(rec)

        def case(
            kind: str,
            stage: str,
            source: str,
            opened: str,
            sid: str = sid,
            out: list[dict[str, Any]] = out,
        ) -> None:
            out.append(
                {
                    "type": "case",
                    "id": f"C-{sid}-{len(out)}",
                    "structure": sid,
                    "kind": kind,
                    "stage": stage,
                    "source": source,
                    "opened": opened,
                }
            )

        scenario.build(permit, case, now)
        yield from out
