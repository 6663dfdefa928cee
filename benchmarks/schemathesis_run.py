"""schemathesis against a real ``shelfwise serve`` on loopback, as issue 13 asks: an admin key,
every operation, at least 100 examples each, every phase (examples, coverage, fuzzing, stateful) and
every check. Writes ``benchmarks/results/schemathesis.json`` (failures, warnings, the command).

A few merchandising rules compare fields with each other or with the catalogue, which JSON Schema
cannot state; the document states them in prose and the server answers them with a documented 422.
``benchmarks/schemathesis_hooks.py`` (loaded with ``SCHEMATHESIS_HOOKS``, with a config naming those
operations) lets exactly those refusals through ``positive_data_acceptance`` and fails any other 422
to a schema-valid body there; the JSON records both files.

It builds its own store from the first lines of the vendored Online Retail file in a temp dir,
starts ``shelfwise serve`` (which trains a model on first start) with the rate limit off (the fuzzer
must reach the routes, not the limiter), and runs the ``st`` command next to this Python.

    .venv/bin/python -m benchmarks.schemathesis_run [--examples 100]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.schemathesis_hooks import config_toml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "online_retail" / "online_retail.csv.gz"
OUT = ROOT / "benchmarks" / "results" / "schemathesis.json"
HOOKS = ROOT / "benchmarks" / "schemathesis_hooks.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shelfwise.cli.main", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"shelfwise {' '.join(args)} failed: {done.stderr[-2000:]}")


def run(examples: int, lines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shelfwise-schemathesis-") as tmp:
        var = Path(tmp) / "var"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHELFWISE_")},
            "SHELFWISE_VAR_DIR": str(var),
            "SHELFWISE_CONFIG": str(Path(tmp) / "none.toml"),
            "SHELFWISE_RATE_LIMIT_PER_SECOND": "0",
            "SHELFWISE_DASHBOARD_ON_START": "false",
            "SHELFWISE_SERVE_MODEL": "itemknn",
            "SHELFWISE_DEMO_USERS": '["17850", "13047"]',
        }
        head = Path(tmp) / "online_retail_head.csv"
        with gzip.open(DATA, "rb") as src:
            head.write_bytes(b"".join(line for _, line in zip(range(lines + 1), src, strict=False)))
        _cli(["ingest", "events", str(head), "--format", "online-retail"], env)
        port = _port()
        server = subprocess.Popen(
            [sys.executable, "-m", "shelfwise.cli.main", "serve", "--port", str(port), "--host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    raise RuntimeError("serve exited")
                time.sleep(0.5)
            key = (var / "api.key").read_text().strip()
            report = Path(tmp) / "st.json"
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(config_toml())
            command = [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                config.name,
                "run",
                f"{base}/openapi.json",
                "-H",
                "X-API-Key: <admin key>",
                "--max-examples",
                str(examples),
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--checks",
                "all",
                "--seed",
                "13",
                "--no-color",
            ]
            real = [c if c != "X-API-Key: <admin key>" else f"X-API-Key: {key}" for c in command]
            started = time.perf_counter()
            st_env = {**env, "SCHEMATHESIS_HOOKS": str(HOOKS)}
            done = subprocess.run(real, cwd=tmp, env=st_env, capture_output=True, text=True, timeout=3600)
            seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
    text = done.stdout + done.stderr
    OUT.with_suffix(".txt").write_text(text)  # the whole run, every failure with its curl
    summary = _summary(text)
    return {
        "name": "schemathesis",
        "command": "SCHEMATHESIS_HOOKS=benchmarks/schemathesis_hooks.py " + " ".join(command),
        "config": config_toml(),
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "store": f"first {lines} lines of Online Retail (SQLite), model itemknn trained by serve",
        **summary,
        "output_tail": text[-6000:],
        "report": str(report.name),
    }


def _summary(text: str) -> dict[str, Any]:
    """Counts from st's closing summary (failures, warnings, operations); ``completed`` is False when
    st stopped before its summary (then ``failures`` says nothing)."""
    failures = re.search(r"(\d+) failures?", text)
    warnings = [line.strip() for line in text.splitlines() if "warning" in line.lower()]
    operations = re.search(r"Operations:\s+(\d+) selected / (\d+) total", text)
    completed = re.search(r"=+ .* in [\d.]+s =+", text) is not None
    return {
        "completed": completed,
        "failures": (int(failures.group(1)) if failures else 0) if completed else None,
        "no_failures_line": "No issues found" in text or not failures,
        "schema_validation_mismatch": "schema validation mismatch" in text.lower(),
        "warnings": warnings[:20],
        "operations": int(operations.group(1)) if operations else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    result = run(args.examples, args.lines)
    cases = re.search(r"(\d+) generated", result["output_tail"])
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["table"] = (
        "| examples | phases | failures | schema validation mismatch | cases | seconds |\n"
        "|---|---|---|---|---|---|\n"
        f"| {args.examples} | examples, coverage, fuzzing, stateful | {result['failures']} | "
        f"{'yes' if result['schema_validation_mismatch'] else 'no'} | {cases.group(1) if cases else '?'} | "
        f"{result['seconds']} |"
    )
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "output_tail"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
