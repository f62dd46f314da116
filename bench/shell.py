"""How long a shell command takes, start to exit, as a user's shell starts it: `jobsvc
--help`, and `jobsvc tasks` against the bench's API. The client commands load no part of
the engine (tests/e2e/test_cli.py checks the imports); this measures what that buys,
against a target of 0.5 s, beside a bare interpreter's start."""

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
TARGET_MS = 500.0


def command_ms(argv: list[str], env: dict[str, str]) -> float:
    """One run of `argv`, a new process, in milliseconds; a failure stops the bench."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed: {done.stderr[-2000:]}")
    return elapsed


def shell_commands(bench: Any, scenario: Any) -> None:
    """Each command's median of several runs, interleaved with the interpreter's start."""
    quick = bench.size.get("quick", False)
    jobsvc = str(BIN / "jobsvc")
    commands = {
        "baseline": [sys.executable, "-c", "pass"],
        "jobsvc --help": [jobsvc, "--help"],
        "jobsvc tasks": [jobsvc, "tasks", "--url", bench.base, "--key", bench.key],
    }
    if not quick:  # the first start reads the files from disk, and the API warms up
        for argv in commands.values():
            command_ms(argv, bench.env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(3 if quick else 11):  # interleaved: drift on a shared machine hits each alike
        for name, argv in commands.items():
            times[name].append(command_ms(argv, bench.env))
    python_ms = statistics.median(times.pop("baseline"))
    for name, found in times.items():
        median = statistics.median(found)
        bench.add(
            scenario(
                name, "ms", round(median, 1), "python -c pass", round(python_ms, 1),
                target=f"< {TARGET_MS:.0f} ms", met=median < TARGET_MS,
                extra={"runs": len(found), "max_ms": round(max(found), 1)},
            )
        )  # fmt: skip
