"""Make sure the PostgreSQL and Redis that the tests use are reachable, and that
``redis-server`` is installed: the fault tests start private Redis servers of their own.
The web page's tests drive Debian's ``chromium`` through its ``chromedriver``, with CJK fonts to
draw the Chinese page: those packages are installed the same way when missing.

Each is tried at its URL (PERMITGATE_TEST_PG, PERMITGATE_TEST_REDIS). One that does not answer
is started when its server is installed here; a missing ``redis-server`` is installed with
apt-get where that can be done; otherwise this says plainly what is missing and exits 1, so
`make test` stops before running tests that need it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

import psycopg
import redis

PG_URL = os.environ.get("PERMITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PERMITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def postgres_up() -> bool:
    try:
        with psycopg.connect(PG_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def start_postgres() -> str | None:
    """Start the local cluster(s); returns what is missing, or None."""
    if shutil.which("pg_ctlcluster") is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    for version in sorted(glob.glob("/etc/postgresql/*")):
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                os.path.basename(version),
                "main",
                "start",
            ],
            check=False,
        )
    return None


def install_redis_server() -> str | None:
    """Install Debian's redis-server when it is missing; returns what is missing, or None."""
    if shutil.which("redis-server") is not None:
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "redis-server is not installed (Debian: apt-get install redis-server)"
    print("redis-server: not installed; installing it with apt-get")
    quiet = {"DEBIAN_FRONTEND": "noninteractive", **os.environ}
    subprocess.run([apt, "update", "-qq"], check=False, env=quiet)
    subprocess.run([apt, "install", "-y", "-qq", "redis-server"], check=False, env=quiet)
    if shutil.which("redis-server") is None:
        return "redis-server could not be installed (apt-get install redis-server)"
    return None


BROWSER_PACKAGES = {
    # what must be there -> the Debian package that brings it
    "/usr/bin/chromium": "chromium",
    "/usr/bin/chromedriver": "chromium-driver",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc": "fonts-noto-cjk",
}


def install_browser() -> str | None:
    """Install Debian's chromium, chromium-driver and CJK fonts where missing; returns what is
    missing, or None."""
    missing = [package for path, package in BROWSER_PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return f"{', '.join(missing)} not installed (Debian: apt-get install {' '.join(missing)})"
    print(f"{', '.join(missing)}: not installed; installing with apt-get")
    quiet = {"DEBIAN_FRONTEND": "noninteractive", **os.environ}
    subprocess.run([apt, "update", "-qq"], check=False, env=quiet)
    subprocess.run([apt, "install", "-y", "-qq", *missing], check=False, env=quiet)
    still = [package for path, package in BROWSER_PACKAGES.items() if not os.path.exists(path)]
    if still:
        return f"{', '.join(still)} could not be installed (apt-get install {' '.join(still)})"
    return None


def start_redis() -> str | None:
    if shutil.which("redis-server") is None:
        return "Redis is not installed (Debian: apt-get install redis-server)"
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=False,
    )
    return None


def ensure(name: str, url: str, up: object, start: object) -> str | None:
    assert callable(up) and callable(start)
    if up():
        print(f"{name}: reachable at {url}")
        return None
    print(f"{name}: not reachable at {url}; starting it")
    missing = start()
    if missing:
        return str(missing)
    for _ in range(40):
        if up():
            print(f"{name}: started")
            return None
        time.sleep(0.5)
    return f"{name} was started but does not answer at {url}"


def main() -> int:
    problems = [
        p
        for p in (
            install_redis_server(),
            install_browser(),
            ensure("PostgreSQL", PG_URL, postgres_up, start_postgres),
            ensure("Redis", REDIS_URL, redis_up, start_redis),
        )
        if p
    ]
    for problem in problems:
        print(f"missing: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
