"""The results of ``make bench`` as a Markdown table and a chart, from the harness's JSON.

    python -m benchmarks.report benchmarks/results/latest.json   # writes latest.md and .png

Every figure comes from one run, so ratios compare systems measured minutes apart on the same
machine: on a shared machine only those mean much. For each (system, load, placement, streams)
the best round (most calls/s) is kept, and every round's calls/s is shown beside it. Ratios
are to ``bare`` (the ceiling of Python gRPC) and to ``cerbos`` at the same placement and
streams. Issue 8's targets are checked on the pinned figures.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["progress_line", "write"]

Row = dict[str, Any]
_Key = tuple[str, str, str, int]  # system, load, placement, streams


def progress_line(row: Row) -> str:
    """One line per measurement while the harness runs."""
    head = (
        f"{row['placement']:<8} r{row['round']} {row['system']:<7} {row['load']:<15} "
        f"x{row['streams']:<4}"
    )
    if "error" in row:
        return f"{head} FAILED: {row['error']}"
    rate = (
        f"{row['decisions_per_s']:>10,.0f} decisions/s"
        if row["bulk"]
        else f"{row['calls_per_s']:>8,.0f} calls/s"
    )
    return (
        f"{head} {rate}  p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
        f"server {row['server_cpu_us_per_call']:,.0f} µs/call  others {row['others_cores']:.2f}"
    )


@dataclass(frozen=True)
class Best:
    row: Row
    rounds: list[float]  # calls/s (bulk: decisions/s) of every good round
    failed: int


def _best(rows: Iterable[Row]) -> dict[_Key, Best]:
    grouped: dict[_Key, list[Row]] = {}
    for row in rows:
        key = (row["system"], row["load"], row["placement"], row["streams"])
        grouped.setdefault(key, []).append(row)
    out: dict[_Key, Best] = {}
    for key, runs in grouped.items():
        good = [r for r in runs if "error" not in r]
        if good:
            top = max(good, key=lambda r: float(r["calls_per_s"]))
            rate = "decisions_per_s" if top["bulk"] else "calls_per_s"
            out[key] = Best(top, [r[rate] for r in good], len(runs) - len(good))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _num(value: float) -> str:
    return f"{value:,.0f}"


@dataclass
class Figures:
    best: dict[_Key, Best]

    def get(self, system: str, load: str, placement: str, streams: int, field: str) -> Any:
        found = self.best.get((system, load, placement, streams))
        return None if found is None else found.row[field]


def _targets(f: Figures, bulk_gate: str, bulk_cerbos: str) -> list[tuple[str, str, bool | None]]:
    """(target, figures, met) for issue 8's targets; met is None when a figure is missing."""
    p = "pinned"

    def cps(system: str, load: str = "ALLOW", streams: int = 128) -> float | None:
        value = f.get(system, load, p, streams, "calls_per_s")
        return None if value is None else float(value)

    def lat(system: str, field: str, streams: int) -> float | None:
        value = f.get(system, "ALLOW", p, streams, field)
        return None if value is None else float(value)

    out: list[tuple[str, str, bool | None]] = []

    def target(name: str, figure: float | None, limit: float, met: Callable[[float], bool]) -> None:
        # Three figures: a ratio just short of its target must not print as the target itself.
        shown = "missing" if figure is None else f"{figure:.3f}× (target {limit:g}×)"
        out.append((name, shown, None if figure is None else met(figure)))

    target(
        "gate ≥ 0.90× bare, calls/s at 128 streams",
        _ratio(cps("gate"), cps("bare")),
        0.90,
        lambda r: r >= 0.90,
    )
    target(
        "gate ≥ 1.0× Cerbos, calls/s at 128 streams",
        _ratio(cps("gate"), cps("cerbos")),
        1.0,
        lambda r: r >= 1.0,
    )
    target(
        "gate p99 ≤ 1.5× bare p99 at 128 streams",
        _ratio(lat("gate", "p99_ms", 128), lat("bare", "p99_ms", 128)),
        1.5,
        lambda r: r <= 1.5,
    )
    target(
        "gate with a receipt ≥ 0.75× bare, calls/s at 128 streams",
        _ratio(cps("gate", "ALLOW+receipt"), cps("bare")),
        0.75,
        lambda r: r >= 0.75,
    )
    target(
        "one call at a time: gate p50 ≤ 1.15× bare p50",
        _ratio(lat("gate", "p50_ms", 1), lat("bare", "p50_ms", 1)),
        1.15,
        lambda r: r <= 1.15,
    )
    gate_bulk = f.get("gate", bulk_gate, p, _bulk_streams(f), "decisions_per_s")
    cerbos_bulk = f.get("cerbos", bulk_cerbos, p, _bulk_streams(f), "decisions_per_s")
    target(
        "BatchCheck ≥ 10× Cerbos's bulk CheckResources, decisions/s on one core",
        _ratio(gate_bulk, cerbos_bulk),
        10,
        lambda r: r >= 10,
    )
    return out


def _bulk_streams(f: Figures) -> int:
    return next((key[3] for key, b in f.best.items() if b.row["bulk"]), 16)


def _unary_table(f: Figures, placement: str, streams: list[int]) -> list[str]:
    lines = [
        "| system | load | streams | calls/s | every round | server CPU µs/call | p50 ms "
        "| p99 ms | ×bare | ×Cerbos | others (cores) |",
        "|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    keys = sorted(
        (k for k, b in f.best.items() if k[2] == placement and not b.row["bulk"]),
        key=lambda k: (k[3], _order(k[0]), k[1]),
    )
    for system, load, _, n in keys:
        best = f.best[(system, load, placement, n)]
        r = best.row
        bare = f.get("bare", "ALLOW", placement, n, "calls_per_s")
        cerbos = f.get("cerbos", "ALLOW", placement, n, "calls_per_s")
        failed = f" ({best.failed} failed)" if best.failed else ""
        lines.append(
            f"| {system} | {load} | {n} | {_num(r['calls_per_s'])} | "
            f"{' / '.join(_num(x) for x in best.rounds)}{failed} | "
            f"{r['server_cpu_us_per_call']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{_x(_ratio(r['calls_per_s'], bare))} | {_x(_ratio(r['calls_per_s'], cerbos))} | "
            f"{r['others_cores']:.2f} |"
        )
    return lines if len(lines) > 2 else []


def _bulk_table(f: Figures, cerbos_bulk: str) -> list[str]:
    lines = [
        "| system | load | placement | decisions/s | every round "
        "| server CPU µs/decision | p50 ms per message | ×Cerbos bulk | others (cores) |",
        "|---|---|---|--:|---|--:|--:|--:|--:|",
    ]
    keys = sorted(
        (k for k, b in f.best.items() if b.row["bulk"]), key=lambda k: (k[2], _order(k[0]))
    )
    for system, load, placement, n in keys:
        best = f.best[(system, load, placement, n)]
        r = best.row
        per_decision = r["server_cpu_us_per_call"] * r["calls"] / max(1, r["decisions"])
        cerbos = f.get("cerbos", cerbos_bulk, placement, n, "decisions_per_s")
        lines.append(
            f"| {system} | {load} | {placement} | {_num(r['decisions_per_s'])} | "
            f"{' / '.join(_num(x) for x in best.rounds)} | {per_decision:,.1f} | "
            f"{r['p50_ms']:.1f} | {_x(_ratio(r['decisions_per_s'], cerbos))} | "
            f"{r['others_cores']:.2f} |"
        )
    return lines if len(lines) > 2 else []


def _workers_lines(f: Figures) -> list[str]:
    """gate and gate-w2 on the same loads over several connections, unpinned."""
    lines = []
    for key in sorted(k for k in f.best if k[0] == "gate-w2"):
        _, load, placement, n = key
        rate = "decisions_per_s" if f.best[key].row["bulk"] else "calls_per_s"
        one = f.get("gate", load, placement, n, rate)
        two = f.get("gate-w2", load, placement, n, rate)
        cpu_one = f.get("gate", load, placement, n, "server_cpu_us_per_call")
        cpu_two = f.get("gate-w2", load, placement, n, "server_cpu_us_per_call")
        if one is None or two is None:
            continue
        unit = "decisions/s" if rate == "decisions_per_s" else "calls/s"
        lines.append(
            f"- {load}, {n} in flight, {placement}: 1 process {_num(one)} {unit} "
            f"({cpu_one:,.0f} µs CPU a request), 2 workers {_num(two)} ({cpu_two:,.0f} µs): "
            f"{_x(_ratio(two, one))}"
        )
    return lines


_ORDER = ("bare", "gate", "gate-w2", "cerbos", "naive")


def _order(system: str) -> int:
    return _ORDER.index(system) if system in _ORDER else len(_ORDER)


def markdown(out: dict[str, Any]) -> str:
    f = Figures(_best(out["measurements"]))
    settings, machine, versions = out["settings"], out["machine"], out.get("versions", {})
    streams = list(settings["streams"])
    bulk_gate = next((k[1] for k, b in f.best.items() if k[0] == "gate" and b.row["bulk"]), "")
    bulk_cerbos = next((k[1] for k, b in f.best.items() if k[0] == "cerbos" and b.row["bulk"]), "")
    lines = [
        "# make bench: the latest run",
        "",
        f"Measured {out['started']} to {out.get('finished', '?')} on {machine['cpu']}, "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, Linux {machine['kernel']} "
        f"(load average at start {machine['loadavg_at_start']}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        f"h2load, one connection, gRPC framing; {settings['rounds']} round(s) alternating the "
        f"systems, {settings['warmup']:g} s warm-up then {settings['seconds']:g} s measured per "
        "load; the best round is kept and every round shown. **pinned**: each server on core "
        f"{settings['server_core']} (`taskset -c {settings['server_core']}`; Cerbos with "
        f"`GOMAXPROCS=1`), h2load on core {settings['client_core']}; **unpinned**: no affinity. "
        "Server CPU per call counts every process of the server until it is idle again after "
        "the load (the gate's decision log included). *others*: cores' worth of CPU that "
        "processes outside the measurement used meanwhile (the machine may be shared).",
        "",
    ]
    if settings.get("partial"):
        lines += ["**A partial run** (`--quick` or `--only`): not the figures of record.", ""]
    lines += ["## Issue 8's targets (pinned, one run)", "", "| target | figure | met |"]
    lines.append("|---|---|---|")
    for name, shown, met in _targets(f, bulk_gate, bulk_cerbos):
        verdict = "not measured" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {name} | {shown} | {verdict} |")
    lines.append("")
    for placement, title in (
        ("pinned", "Unary calls, each server on one core"),
        ("unpinned", "Unary calls, unpinned (2 cores shared with h2load)"),
    ):
        table = _unary_table(f, placement, streams)
        if table:
            lines += [f"## {title}", "", *table, ""]
    table = _bulk_table(f, bulk_cerbos)
    if table:
        lines += [
            "## Bulk: BatchCheck (1,000 checks a message) and CheckResources (500 resources)",
            "",
            *table,
            "",
        ]
    workers = _workers_lines(f)
    lines += [
        "## `--workers`: 1 and 2 gate processes on one port",
        "",
        "The same loads over several connections (the kernel gives each connection to one "
        "worker), unpinned:",
        "",
    ]
    lines += workers or ["- not measured in this run"]
    lines.append("")
    lines += ["## Systems", ""]
    lines += [f"- **{name}**: {text}" for name, text in out["systems"].items()]
    notes = list(out.get("notes", [])) + [f"FAILED: {x}" for x in out.get("failures", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note.splitlines()[0]}" for note in notes]
    return "\n".join(lines) + "\n"


def chart(out: dict[str, Any], path: Path) -> None:
    """Throughput and p50/p99 against streams, per system and load, in both placements;
    bulk decisions/s beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = Figures(_best(out["measurements"]))
    placements = ("pinned", "unpinned")
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), squeeze=False)
    series = sorted(
        {(k[0], k[1]) for k, b in f.best.items() if not b.row["bulk"]},
        key=lambda s: (_order(s[0]), s[1]),
    )
    # One colour per system and load in both placements, so the two rows read alike.
    palette = plt.get_cmap("tab10")
    colors = {s: palette(i % 10) for i, s in enumerate(series)}
    for row, placement in enumerate(placements):
        rate, latency, bulk = axes[row]
        for system, load in series:
            points = sorted(
                (k[3], b.row)
                for k, b in f.best.items()
                if k[:3] == (system, load, placement) and not b.row["bulk"]
            )
            if not points:
                continue
            xs = [n for n, _ in points]
            label = f"{system} {load}"
            color = colors[system, load]
            rate.plot(
                xs, [r["calls_per_s"] for _, r in points], marker="o", label=label, color=color
            )
            latency.plot(xs, [r["p50_ms"] for _, r in points], marker="o", color=color)
            latency.plot(
                xs, [r["p99_ms"] for _, r in points], marker="x", linestyle="--", color=color
            )
        for axis in (rate, latency):
            axis.set_xscale("log")
            axis.set_xticks([1, 16, 128], labels=["1", "16", "128"])
            axis.set_xlabel("streams in flight (one connection; c8: eight)")
            axis.grid(True, alpha=0.3)
        rate.set_ylabel("calls/s")
        rate.set_title(f"{placement}: calls/s (best round)")
        latency.set_yscale("log")
        latency.set_ylabel("ms")
        latency.set_title(f"{placement}: p50 (solid) and p99 (dashed)")
        bars = sorted(
            ((k[0], k[1], b.row) for k, b in f.best.items() if b.row["bulk"] and k[2] == placement),
            key=lambda x: _order(x[0]),
        )
        bulk.bar(
            [f"{s}\n{load}" for s, load, _ in bars], [r["decisions_per_s"] for _, _, r in bars]
        )
        bulk.set_ylabel("decisions/s")
        bulk.set_title(f"{placement}: bulk decisions/s")
        bulk.grid(True, axis="y", alpha=0.3)
        rate.legend(fontsize=8)
    fig.suptitle(f"make bench, {out['started']} ({out['machine']['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: dict[str, Any], md_path: Path, png_path: Path) -> list[str]:
    """Write the table and the chart; the names of the files written."""
    md_path.write_text(markdown(out))
    chart(out, png_path)
    return [md_path.name, png_path.name]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    out = orjson.loads(source.read_bytes())
    written = write(out, source.with_suffix(".md"), source.with_suffix(".png"))
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
