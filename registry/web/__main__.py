"""``python -m registry.web --db URL --listen HOST:PORT --cert C --key K``: the page alone.

The same page the registry service serves beside its gRPC port (``serve --web-listen``), run
by itself over an existing registry database (read only), until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import uvloop

from registry.errors import PlainError
from registry.storage import Database
from registry.web.server import WebServer
from server.listen import serve_until_signalled

log = logging.getLogger("registry.web")


class _Standalone:
    """The page and the database it owns: the database is closed when the page stops."""

    def __init__(self, db: Database, page: WebServer) -> None:
        self.db, self.page = db, page

    async def start(self) -> None:
        await self.page.start()

    def describe(self) -> str:
        return f"{self.page.describe()}; data: {self.db}"

    async def stop(self) -> None:
        await self.page.stop()
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
def main(db_url: str | None, listen: str, cert: Path, key: Path) -> None:
    """Serve the working group's page over HTTPS, read-only."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        db = Database(db_url, create=False)
        page = WebServer(db, listen, cert, key)
        uvloop.run(serve_until_signalled(_Standalone(db, page), log))
    except PlainError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
