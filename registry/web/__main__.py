"""``python -m registry.web --db URL --state DIR --listen HOST:PORT --cert C --key K
--client-ca CA``: the page alone.

The same page the registry service serves beside its gRPC port (``serve --web-listen``), run
by itself over an existing registry database (read only), until SIGINT or SIGTERM. Like the
service's, it is read by enrolled departments only: a client certificate from ``--client-ca``
whose O is a department the registry's state (``--state``) holds enrolled and active.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import uvloop

from registry.admin import default_state_dir
from registry.department_keys import DepartmentDirectory
from registry.errors import PlainError
from registry.storage import Database
from registry.web.server import WebServer
from server.listen import serve_until_signalled

log = logging.getLogger("registry.web")


class _Standalone:
    """The page and the database and directory it owns: both are closed when the page stops."""

    def __init__(self, db: Database, directory: DepartmentDirectory, page: WebServer) -> None:
        self.db, self.directory, self.page = db, directory, page

    async def start(self) -> None:
        await self.page.start()

    def describe(self) -> str:
        return f"{self.page.describe()}; data: {self.db}"

    async def stop(self) -> None:
        await self.page.stop()
        self.directory.close()
        self.db.dispose()


@click.command()
@click.option(
    "--db",
    "db_url",
    envvar="PERMITGATE_DB",
    default=None,
    metavar="URL",
    help="The registry database (env PERMITGATE_DB); read only.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8443",
    show_default=True,
    help="HOST:PORT to serve the page on (port 0: any free one).",
)
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="TLS certificate chain (PEM, leaf first).",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The certificate's private key (PEM).",
)
@click.option(
    "--client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The CA that issues departments' client certificates (PEM).",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The registry's state directory, where enrolment is read (default: beside --keys).",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="The registry's keys directory (locates the default --state).",
)
def main(
    db_url: str | None,
    listen: str,
    cert: Path,
    key: Path,
    client_ca: Path,
    state_dir: Path | None,
    keys_dir: Path,
) -> None:
    """Serve the working group's page over HTTPS to enrolled departments, read-only."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        db = Database(db_url, create=False)
        directory = DepartmentDirectory(state_dir or default_state_dir(keys_dir))
        page = WebServer(db, listen, cert, key, client_ca=client_ca, directory=directory)
        uvloop.run(serve_until_signalled(_Standalone(db, directory, page), log))
    except PlainError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
