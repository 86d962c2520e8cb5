"""The distributed tests, many times in a row beside a busy CPU: pass/fail counts per test.

    python benchmarks/stress_distributed.py --runs 20

Each run is ``pytest tests/test_distributed.py`` in a fresh process. Meanwhile ``--busy`` niced
busy-loop processes (default: one per core) keep every core occupied, so the torchrun workers
are descheduled at awkward moments, as on a loaded CI machine: that is how a race at process
exit (a worker aborting with SIGABRT, "terminate called without an active exception") shows
up. Prints one line per run as it ends, then the count per test and the total; exits non-zero
if anything failed. ``--max-minutes`` stops starting new runs after that long (the report
says how many ran).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABORT = "terminate called without an active exception"


def start_busy(n: int) -> list[subprocess.Popen]:
    """n processes spinning in a loop at the lowest priority (they take idle time only, but
    every core is busy)."""
    spin = "import os\nif hasattr(os, 'nice'): os.nice(19)\nwhile True: pass"
    return [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def run_once(tests: str, extra: list[str], timeout: float, report: Path) -> tuple[dict[str, str], str]:
    """One pytest run: ({test name: 'passed' | 'failed' | 'error' | 'skipped'}, the failure
    texts joined)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", tests, *extra]
    try:
        r = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = -1, f"timed out after {timeout:.0f} s\n{e.stdout or ''}"
    outcomes: dict[str, str] = {}
    texts = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "?")
            outcome = "passed"
            for kind in ("failure", "error", "skipped"):
                el = case.find(kind)
                if el is not None:
                    outcome = {"failure": "failed"}.get(kind, kind)
                    texts.append(f"{name}: {el.get('message', '')}\n{el.text or ''}")
                    break
            outcomes[name] = outcome
        report.unlink()
    if rc != 0 and not any(o in ("failed", "error") for o in outcomes.values()):
        outcomes["(the pytest run itself)"] = "failed"  # a crash or timeout before the report
        texts.append(out[-4000:])
    return outcomes, "\n".join(texts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-loop processes (0: none)")
    p.add_argument("--tests", default="tests/test_distributed.py")
    p.add_argument("--timeout", type=float, default=1200, help="seconds for one pytest run")
    p.add_argument("--max-minutes", type=float, default=None, help="start no run after this long")
    p.add_argument("--log", type=Path, default=None, help="append each failure's text to this file")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (after --), e.g. -k sigterm")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from facegan.runtime import cpu_name

    print(f"{args.tests}, {args.runs} runs, {args.busy} niced busy loops on {os.cpu_count()} cores "
          f"({cpu_name()})", flush=True)
    counts: dict[str, Counter] = defaultdict(Counter)
    aborts = runs = clean = 0
    t0 = time.monotonic()
    busy = start_busy(args.busy)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(1, args.runs + 1):
                if args.max_minutes is not None and time.monotonic() - t0 > 60 * args.max_minutes:
                    print(f"stopping: --max-minutes {args.max_minutes:g} reached", flush=True)
                    break
                t = time.monotonic()
                outcomes, texts = run_once(args.tests, args.pytest_args, args.timeout, Path(tmp) / "report.xml")
                runs += 1
                for name, outcome in outcomes.items():
                    counts[name][outcome] += 1
                bad = sorted(n for n, o in outcomes.items() if o in ("failed", "error"))
                clean += not bad
                aborted = texts.count(ABORT)
                aborts += aborted
                print(f"run {i}: {sum(o == 'passed' for o in outcomes.values())}/{len(outcomes)} passed "
                      f"in {time.monotonic() - t:.0f} s" + (f"; failed: {', '.join(bad)}" if bad else "")
                      + (f"; {aborted} worker abort(s)" if aborted else ""), flush=True)
                if bad and args.log:
                    with open(args.log, "a") as f:
                        f.write(f"===== run {i}\n{texts}\n")
    finally:
        stop_busy(busy)

    width = max((len(n) for n in counts), default=10)
    print(f"\n{'test':<{width}}  passed  failed  error  skipped")
    for name in sorted(counts):
        c = counts[name]
        print(f"{name:<{width}}  {c['passed']:>6}  {c['failed']:>6}  {c['error']:>5}  {c['skipped']:>7}")
    total = Counter()
    for c in counts.values():
        total.update(c)
    print(f"\ntotal over {runs} run(s): {total['passed']} passed, {total['failed']} failed, {total['error']} "
          f"errors, {total['skipped']} skipped; {clean} run(s) with no failure; '{ABORT}' seen "
          f"{aborts} time(s); {(time.monotonic() - t0) / 60:.1f} min")
    return 0 if runs and not (total["failed"] or total["error"]) else 1


if __name__ == "__main__":
    sys.exit(main())
