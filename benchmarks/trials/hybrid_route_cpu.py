"""Process CPU per uncached ``GET /v1/users/{id}/recommendations?k=K`` through the real app in process
(FastAPI TestClient: routing, consent, the chain in its model pool, shaping, JSON), over a few
hundred shoppers of the store and version in ``SHELFWISE_VAR_DIR``.

    SHELFWISE_VAR_DIR=… PYTHONPATH=src:. nice -n 10 .venv/bin/python \
        -m benchmarks.trials.hybrid_route_cpu [k] [n]

Each shopper is asked once (no result cache hit). Prints median and p99 CPU ms of the process;
nothing is written.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from fastapi.testclient import TestClient

from shelfwise.api.app import app_from_env
from shelfwise.core.access import Role


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    app = app_from_env()
    key, _ = app.state.services.keys.create(Role.READ, "trial")
    with TestClient(app, headers={"X-API-Key": key}) as client:
        dep = (
            app.state.services.deployment_for(None) if hasattr(app.state.services, "deployment_for") else None
        )
        del dep
        from benchmarks.bench_serving import _customers

        users = _customers()
        for u in users[-5:]:
            client.get(f"/v1/users/{u}/recommendations?k={k}").raise_for_status()
        cpu, wall, sources = [], [], {}
        for u in users[: n * 3 : 3]:
            c0, w0 = time.process_time(), time.perf_counter()
            r = client.get(f"/v1/users/{u}/recommendations?k={k}")
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
            r.raise_for_status()
            body = r.json()
            assert not body["cached"]
            sources[body["source"]] = sources.get(body["source"], 0) + 1
    for name, v in (("process cpu", cpu), ("wall", wall)):
        a = np.asarray(v)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        print(f"k={k} {name:12s} p50 {p50:7.3f}  p90 {p90:7.3f}  p99 {p99:7.3f} ms")
    print("sources", sources)


if __name__ == "__main__":
    main()
