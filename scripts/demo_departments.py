"""The departments' part of `make demo`: two departments and the working group, each with its key
and certificate, writing to the registry service as themselves, and the gate following.

``enrol`` (while the demo is built) makes a throwaway CA with a server certificate and a client
certificate per department (``registry.demo_pki``), each department's signing key, and enrols
them in the registry; it also writes ``demo/departments/<id>.env``, the environment a
department's shell sets to use ``permitgate department ...``.

``scenario`` (once the services answer) runs the Art. 19 story and prints every command with
what it printed: urban management enforcement finds an unauthorised change of use on its patrol,
outside its remit, opens the case as reported and refers it to planning; planning files it (the
gate turns the structure to DENY within a second), orders the building stopped, reports its
decision back, and suspends the builder, whom the gate then refuses as an applicant (Art. 22);
planning also files a case of its own on a structure the gate allowed (ALLOW to DENY, timed); a
tax office's premises check notifies the working group, whose inbox shows the notice and the
referral; the working group acknowledges it; the page is opened in headless Chromium when there
is one, and its screenshot kept.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from permitgate_client import Client, Decision, DepartmentClient, Reason

from registry.demo_pki import make_demo_pki
from registry.web.client_proxy import ClientCertificateProxy

__all__ = ["DEPARTMENTS", "Department", "enrol", "scenario"]


@dataclass(frozen=True)
class Department:
    id: str
    role: str
    name: str


DEPARTMENTS = (
    Department("city-enforcement", "enforcement", "City Urban Management Enforcement Bureau"),
    Department("city-planning", "planning", "City Planning Commission"),
    Department("working-group", "working_group", "Joint Meeting Working Group"),
)
ENFORCEMENT, PLANNING, WORKING_GROUP = DEPARTMENTS
PARTY = "91110105MA01DEMO0X"  # the builder: a unified social credit code's shape
WAIT_FOR_GATE = 5.0


@dataclass(frozen=True)
class Paths:
    root: Path
    demo: Path
    permitgate: str

    @property
    def pki(self) -> Path:
        return self.demo / "pki"

    @property
    def keys(self) -> Path:
        return self.demo / "departments"

    def shown(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def enrol(paths: Paths, run: Callable[..., None]) -> None:
    """Certificates, keys and enrolment of every department (``run`` runs a permitgate command
    and prints it)."""
    pki = make_demo_pki(paths.pki, {d.id: d.name for d in DEPARTMENTS})
    where = paths.shown(pki.directory)
    print(f"# a throwaway CA, the registry's certificate and one per department: {where}/")
    for department in DEPARTMENTS:
        keys = paths.shown(paths.keys)
        run("registry", "department", "keygen", "--id", department.id, "--out", keys)
        run(
            "registry",
            "department",
            "enrol",
            "--id",
            department.id,
            "--role",
            department.role,
            "--name",
            department.name,
            "--key",
            paths.shown(paths.keys / f"{department.id}.pub"),
        )
        cert, cert_key = pki.client(department.id)
        env = {
            "PERMITGATE_DEPARTMENT_KEY": paths.shown(paths.keys / f"{department.id}.key"),
            "PERMITGATE_DEPARTMENT_CERT": paths.shown(cert),
            "PERMITGATE_DEPARTMENT_CERT_KEY": paths.shown(cert_key),
            "PERMITGATE_REGISTRY_CA": paths.shown(pki.ca),
        }
        (paths.keys / f"{department.id}.env").write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        )


class Scenario:
    def __init__(self, paths: Paths, *, gate: str, departments: str, web: str) -> None:
        self.paths = paths
        self.gate = gate
        self.departments = departments
        self.web = web
        self.client = Client(gate, timeout=5.0)

    def as_department(self, department: Department, *args: str) -> str:
        """Run ``permitgate department|inbox ...`` as ``department``; print it and its output."""
        env_file = self.paths.shown(self.paths.keys / f"{department.id}.env")
        shown = " ".join(shlex.quote(a) for a in ("permitgate", *args))
        print(f"\n$ (. {env_file}; {shown})", flush=True)
        env = dict(os.environ, PERMITGATE_REGISTRY=self.departments)
        for line in (self.paths.keys / f"{department.id}.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = str(self.paths.root / shlex.split(value)[0])
        done = subprocess.run(
            [self.paths.permitgate, *args],
            cwd=self.paths.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        output = (done.stdout + done.stderr).rstrip()
        for line in output.splitlines():
            print(f"  {line}")
        if done.returncode != 0:
            raise RuntimeError(f"'{shown}' exited with {done.returncode}")
        return output

    def department_client(self, department: Department) -> DepartmentClient:
        """``department``'s client in this process (its key, certificate and the CA)."""
        pki, keys = self.paths.pki, self.paths.keys
        return DepartmentClient(
            self.departments,
            key=keys / f"{department.id}.key",
            cert=pki / f"{department.id}.pem",
            cert_key=pki / f"{department.id}.key",
            ca=pki / "ca.pem",
        )

    def check(self, structure_id: str) -> Decision:
        return self.client.check_connection(structure_id, utility="water")

    def show(self, what: str, decision: Decision) -> None:
        reasons = ", ".join(_reason(r) for r in decision.reasons) or "no reason"
        print(f"  gate: {what}: {decision.verdict} ({reasons})", flush=True)

    def until_changed(self, structure_id: str, before: str, since: float) -> None:
        """Ask the gate until its answer is no longer ``before``; print how long that took."""
        while True:
            decision = self.check(structure_id)
            if decision.verdict != before:
                took = time.monotonic() - since
                reasons = ", ".join(_reason(r) for r in decision.reasons)
                print(
                    f"  gate: {structure_id}: {before} -> {decision.verdict} ({reasons}) "
                    f"{took:.2f} s after the write was answered",
                    flush=True,
                )
                return
            if time.monotonic() - since > WAIT_FOR_GATE:
                raise RuntimeError(f"the gate still answers {before} for {structure_id}")
            time.sleep(0.02)


def _reason(reason: Reason) -> str:
    about = reason.case_id or reason.permit_kind
    return f"{reason.code} {about}" if about else reason.code


def scenario(
    paths: Paths,
    *,
    gate: str,
    departments: str,
    web: str,
    allowed: tuple[str, str],
    other_use: str,
) -> None:
    """The departments' story, printed; ``allowed`` are two structures the gate allows,
    ``other_use`` one whose permitted use differs from a restaurant."""
    s = Scenario(paths, gate=gate, departments=departments, web=web)
    found, own = allowed
    print("\n# Departments write as themselves (a signed statement, mutual TLS); Art. 7, 19, 22:")
    s.show(found, s.check(found))
    s.as_department(
        ENFORCEMENT,
        "department",
        "open-case",
        "C-DEMO-1",
        "--structure",
        found,
        "--kind",
        "unauthorized_use_change",
        "--source",
        "patrol",
        "--party",
        PARTY,
    )
    s.show(found, s.check(found))
    s.as_department(ENFORCEMENT, "department", "refer-case", "C-DEMO-1", PLANNING.id)
    s.as_department(PLANNING, "department", "move-case", "C-DEMO-1", "filed")
    s.show(found, s.check(found))
    s.as_department(PLANNING, "department", "move-case", "C-DEMO-1", "stop_order")
    s.as_department(
        PLANNING,
        "department",
        "answer-referral",
        "C-DEMO-1",
        "Filed; stop order served on the builder. Rectify within 30 days.",
    )
    applicant = s.client.check_applicant(PARTY, asking="planning")
    s.show(f"applicant {PARTY}", applicant)
    s.as_department(PLANNING, "department", "suspend-party", "C-DEMO-1")
    time.sleep(0.5)
    s.show(f"applicant {PARTY} (Art. 22)", s.client.check_applicant(PARTY, asking="planning"))

    print(
        f"\n# Planning finds a deviation from a permit on {own}, in its own remit, and files it"
        "\n# from Python (permitgate_client.DepartmentClient); the gate is asked until it changes:"
    )
    s.show(own, s.check(own))
    with s.department_client(PLANNING) as planning:
        written = planning.open_case(
            "C-DEMO-2", own, "deviates_from_permit", "filed", "satellite", datetime.now(UTC)
        )
        answered = time.monotonic()
    print(f"  open_case C-DEMO-2: registry version {written.registry_version}")
    s.until_changed(own, "ALLOW", answered)

    print("\n# A tax office checks premises; the use differs, so the working group is notified:")
    s.show(
        other_use,
        s.client.verify_premises(
            other_use, office="tax", declared_use="restaurant", application_id="A-DEMO-1"
        ),
    )
    listed = s.as_department(WORKING_GROUP, "inbox", "list")
    notice = next(
        (word for line in listed.splitlines() for word in line.split() if word.startswith("N-")),
        None,
    )
    if notice is not None:
        s.as_department(WORKING_GROUP, "inbox", "ack", notice)
    screenshot(paths, web)


def screenshot(paths: Paths, web: str) -> None:
    """Open the working group's page in headless Chromium, when there is one, and keep what it
    shows. The page admits enrolled departments by their client certificate, and headless
    Chromium has no certificate store: it reads the page through a loopback proxy presenting
    the working group's certificate (``registry.web.client_proxy``)."""
    print(
        f"\n# The working group's page (read-only, HTTPS): https://{web}/ (English: ?lang=en);"
        f"\n  it needs an enrolled department's client certificate ({WORKING_GROUP.id}'s:"
        f" {paths.shown(paths.pki / WORKING_GROUP.id)}.pem and .key, in the browser's store)"
    )
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("  (no chromium here to open it in; open the address in a browser)")
        return
    out = paths.demo / "web-page.png"
    code = asyncio.run(_screenshot_through_proxy(paths, web, browser, out))
    if code == 0 and out.exists():
        print(
            f"  opened in headless Chromium as {WORKING_GROUP.id} (through a loopback proxy"
            f" presenting its certificate); what it shows: {paths.shown(out)}"
        )
    else:
        print(f"  chromium could not open it (exit {code})")


async def _screenshot_through_proxy(paths: Paths, web: str, browser: str, out: Path) -> int:
    host, port = web.rsplit(":", 1)
    proxy = ClientCertificateProxy(
        host,
        int(port),
        trust=paths.pki / "ca.pem",
        client_cert=paths.pki / f"{WORKING_GROUP.id}.pem",
        client_key=paths.pki / f"{WORKING_GROUP.id}.key",
        serve_cert=paths.pki / "server.pem",
        serve_key=paths.pki / "server.key",
    )
    await proxy.start()
    try:
        chromium = await asyncio.create_subprocess_exec(
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--hide-scrollbars",
            "--window-size=1280,1400",
            f"--screenshot={out}",
            f"{proxy.url}?lang=zh",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(chromium.wait(), timeout=60)
        except TimeoutError:
            chromium.kill()
            await chromium.wait()
            return -1
    finally:
        await proxy.stop()
