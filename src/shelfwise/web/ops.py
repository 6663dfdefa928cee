"""What the operations page does: list model versions, activate one through the release gate,
roll back. The page's session cookie cannot call the API's ``/v1/admin`` routes (they take an
``X-API-Key``, which the page no longer keeps in the browser), so the page calls these, which do the
same through the same registry and live models (``shelfwise.registry``), under the admin role.
"""

from __future__ import annotations

import time
from typing import Any

from shelfwise.registry.training import release


class Operations:
    """Model operations over one process's registry and live models (the API's ``Services``)."""

    def __init__(self, registry: Any, live: Any, metrics: Any = None) -> None:
        self.registry, self.live, self.metrics = registry, live, metrics

    def models(self) -> dict[str, Any]:
        from shelfwise.registry.selection import last_selection

        pointer = self.registry.pointer()
        return {
            "active": pointer.active,
            # the last `models select`: every candidate's held-out metric and p99, and why one won
            "selection": last_selection(self.registry),
            "versions": [
                {
                    "version": i.version,
                    "model": i.model,
                    "created_at": i.created_at,
                    "active": i.version == pointer.active,
                    "metrics": i.metrics,
                    "data_window": i.data_window,
                }
                for i in reversed(self.registry.list())
            ],
        }

    def _answer(self, started: float, previous: str | None, dep: Any) -> dict[str, Any]:
        active = dep.active.version if dep else None
        if self.metrics is not None:
            self.metrics.set_active(active)
        return {"active": active, "previous": previous, "seconds": round(time.perf_counter() - started, 4)}

    def activate(self, version: str, *, force: bool = False) -> dict[str, Any]:
        """Activate ``version`` (the gate's refusal raises ``GateRefusedError`` unless ``force``)."""
        started = time.perf_counter()
        previous = self.registry.active
        self.live.preload(version)
        release(self.registry, version, force=force)
        return self._answer(started, previous, self.live.sync(force=True))

    def rollback(self) -> dict[str, Any]:
        started = time.perf_counter()
        previous = self.registry.active
        return self._answer(started, previous, self.live.rollback())
