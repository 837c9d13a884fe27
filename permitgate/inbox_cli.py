"""``permitgate inbox ...``: the working group's inbox, over the registry service.

Two kinds of item wait there: the licensing offices' notices (Art. 13: premises without their
permits, or used otherwise than permitted), which the group acknowledges, and the referrals of
cases found outside their finder's remit (Art. 19), each on the clock of 2 working days to be
referred and 2 more to have the decision reported back. ``inbox list`` shows both (or one kind,
``--notices`` / ``--referrals``), filtered by office, district, state and age; ``inbox ack``
acknowledges a notice (a write, signed with the working group's key); ``inbox show`` prints one
item. The connection options are ``permitgate department``'s, with the working group's
certificate and key.

``--state`` reads for both kinds: a notice is open until acknowledged, a referral until its
answer is in (then it counts as acknowledged). Referrals have no office: with ``--office`` only
notices are listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
from permitgate_client import DepartmentClient, NotFoundError, ReferralInfo

from permitgate.department_cli import (
    DEPARTMENT_EXIT_CODES,
    RegistryAccess,
    call,
    registry_options,
    request_id_option,
    show,
)

INBOX_STATES = ("open", "acknowledged")


@click.group(epilog=DEPARTMENT_EXIT_CODES)
def inbox() -> None:
    """The working group's inbox: notices (Art. 13) and referrals (Art. 19)."""


def _referrals(
    client: DepartmentClient, state: str | None, overdue: bool, **filters: Any
) -> Iterator[ReferralInfo]:
    for referral in client.referrals(overdue=overdue, **filters):
        answered = referral.state == "answered"
        if state is None or (state == "acknowledged") == answered:
            yield referral


@inbox.command("list", epilog=DEPARTMENT_EXIT_CODES)
@click.option("--office", help="Notices from this licensing office only (referrals have none).")
@click.option("--district", help="Items about structures of this district.")
@click.option(
    "--state",
    type=click.Choice(INBOX_STATES),
    help="open: not yet acknowledged (a referral: not yet answered); acknowledged: done.",
)
@click.option("--min-age-days", type=click.IntRange(min=0), help="At least this many days old.")
@click.option("--max-age-days", type=click.IntRange(min=1), help="At most this many days old.")
@click.option("--notices", "only_notices", is_flag=True, help="Notices only.")
@click.option("--referrals", "only_referrals", is_flag=True, help="Referrals only.")
@click.option("--overdue", is_flag=True, help="Referrals that are late only (implies --referrals).")
@registry_options
def list_items(
    office: str | None,
    district: str | None,
    state: str | None,
    min_age_days: int | None,
    max_age_days: int | None,
    only_notices: bool,
    only_referrals: bool,
    overdue: bool,
    access: RegistryAccess,
    as_json: bool,
) -> None:
    """List the notices, then the referrals, in the inbox (in the registry's order)."""
    only_referrals = only_referrals or overdue
    if only_notices and only_referrals:
        raise click.UsageError("--notices and --referrals (or --overdue): give one, or neither")
    if office is not None and only_referrals:
        raise click.BadParameter(
            "referrals have no office; drop --referrals", param_hint="--office"
        )
    if min_age_days is not None and max_age_days is not None and min_age_days > max_age_days:
        raise click.BadParameter(
            f"{min_age_days} is more than --max-age-days {max_age_days}",
            param_hint="--min-age-days",
        )
    counts = []
    with access.client() as client:
        if not only_referrals:
            n = show(
                client.notices(
                    office=office,
                    district=district,
                    state=state,
                    min_age_days=min_age_days,
                    max_age_days=max_age_days,
                ),
                as_json,
                access,
            )
            counts.append(f"{n} notice{'s' * (n != 1)}")
        if not only_notices and office is None:
            n = show(
                _referrals(
                    client,
                    state,
                    overdue,
                    district=district,
                    min_age_days=min_age_days,
                    max_age_days=max_age_days,
                ),
                as_json,
                access,
            )
            counts.append(f"{n} referral{'s' * (n != 1)}")
    if not as_json:
        click.echo(f"({', '.join(counts)})", err=True)


@inbox.command(epilog=DEPARTMENT_EXIT_CODES)
@click.argument("notice_id")
@request_id_option
@registry_options
def ack(notice_id: str, request_id: str | None, access: RegistryAccess, as_json: bool) -> None:
    """Acknowledge notice NOTICE_ID (the working group's write, signed with its key)."""
    with access.client(writes=True) as client:
        result = call(access, lambda: client.acknowledge_notice(notice_id, request_id=request_id))
    show([result], as_json, access)


@inbox.command("show", epilog=DEPARTMENT_EXIT_CODES)
@click.argument("item_id", metavar="ID")
@registry_options
def show_item(item_id: str, access: RegistryAccess, as_json: bool) -> None:
    """Show notice ID, or else the referral of case ID."""
    with access.client() as client:

        def lookup() -> Any:
            try:
                return client.get_notice(item_id)
            except NotFoundError:
                try:
                    return client.get_referral(item_id)
                except NotFoundError as exc:
                    raise NotFoundError(f"no notice or referral {item_id!r}") from exc

        item = call(access, lookup)
    show([item], as_json, access)
