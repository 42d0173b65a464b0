"""``python -m bench [--quick] [NAME ...]``: run the benchmarks, print the summary, save raw JSON.

This module owns the command line and the run as a whole: the header (machine
and date), the order of the benchmarks, the final summary table with targets
and PASS/MISS, ``bench/results/latest.json``, and the guarantee that every
process started is stopped, whatever happens (errors, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from bench import harness
from bench.harness import BenchResult, Check, format_table, machine_info, say, stop_everything
from bench.churn import run_churn
from bench.first_event import run_first_event
from bench.load import run_load
from bench.observers import run_observers
from bench.overhead import run_overhead, run_split_writes
from bench.streaming import run_streaming
from bench.swap import run_swap

BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    "overhead": run_overhead,
    "split-writes": run_split_writes,
    "streaming": run_streaming,
    "first-event": run_first_event,
    "swap": run_swap,
    "churn": run_churn,
    "observers": run_observers,
    "load": run_load,
    "soak": lambda quick: run_load(quick, soak=True),  # 10 minutes: only when named
}
OPT_IN = {"soak"}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Proxy vs direct benchmarks.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all but {', '.join(sorted(OPT_IN))}): "
                             f"{', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="a much shorter run, for a smoke test")
    parser.add_argument("--host", choices=harness.WSGI_HOSTS, default="gunicorn",
                        help="the WSGI host the proxy runs in (default: python -m app, gunicorn with one gevent "
                             "worker; the others serve wsgi.py through the thread bridge)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json", help="raw results (JSON)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


def print_header(machine: dict, quick: bool) -> None:
    say(f"llama-swap (python) benchmarks{' (quick)' if quick else ''}")
    say(f"  date:    {machine['date']}")
    say(f"  machine: {machine['cpu']}, {machine['cores']} cores, kernel {machine['kernel']}")
    say(f"  python:  {machine['implementation']} {machine['python']}")
    say(f"  host:    {machine.get('wsgi_host', 'gunicorn')}")
    say(f"  load:    {' '.join(f'{x:.2f}' for x in machine['load_average'])} (1/5/15 min, at start; the bench is"
        " CPU-bound: anything else running skews it)")
    say()


def print_summary(checks: list[Check]) -> None:
    rows = [(c.metric, c.unit, c.direct, c.proxy, c.delta, c.target or "-",
             "-" if c.passed is None else c.passed) for c in checks]
    say()
    say("Summary (direct = same upstream without the proxy; added = proxy - direct)")
    say(format_table(["metric", "unit", "direct", "proxy", "added/ratio", "target", "result"], rows))


def save(path: Path, machine: dict, quick: bool, results: list[BenchResult], failures: dict[str, str],
         interrupted: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine, "quick": quick, "interrupted": interrupted,
           "benchmarks": {r.name: r.to_json() for r in results}, "failures": failures}
    path.write_text(json.dumps(doc, indent=1))
    say(f"\nraw results: {path}")


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.WSGI_HOST = args.host
    names = args.names or [name for name in BENCHMARKS if name not in OPT_IN]
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    machine = machine_info()
    machine["wsgi_host"] = args.host
    print_header(machine, args.quick)
    results: list[BenchResult] = []
    failures: dict[str, str] = {}
    began = time.monotonic()
    interrupted = False
    try:
        run_all(names, args.quick, results, failures)
    except KeyboardInterrupt:
        interrupted = True
        say("\ninterrupted: every process started was stopped; partial results follow")
    finally:
        stop_everything()
    machine["load_average_end"] = os.getloadavg()
    print_summary([c for r in results for c in r.checks])
    for name, trace in failures.items():
        say(f"\n{name} failed:\n{trace}")
    save(args.out, machine, args.quick, results, failures, interrupted)
    say(f"total time: {time.monotonic() - began:.0f}s; load average at the end: "
        + " ".join(f"{x:.2f}" for x in machine["load_average_end"]))
    if interrupted:
        return 130
    # A missed target is a finding, not an error: only a benchmark that could not run fails the command.
    return 1 if failures else 0


def run_all(names: list[str], quick: bool, results: list[BenchResult], failures: dict[str, str]) -> None:
    """Run ``names`` in order, appending to ``results``; a failing benchmark is recorded, not fatal."""
    for name in names:
        try:
            results.append(BENCHMARKS[name](quick))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures[name] = "".join(traceback.format_exception(exc))
            say(f"  {name} FAILED: {exc!r}")
        finally:
            stop_everything()
        say()


if __name__ == "__main__":
    sys.exit(main())
