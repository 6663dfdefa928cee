"""Joining a Ray cluster, or starting a local one: shared by the pipeline's engine
(``shelfwise.distributed``) and the sharded search index's actors (``shelfwise.search.shard_actors``).

``SHELFWISE_RAY_ADDRESS`` (or ``address``) joins an existing cluster; otherwise a local one is
started in this process: no dashboard, ``num_cpus`` set, its files under ``/tmp/shelfwise-ray``,
workers' logs kept out of this process's output. Ray is an optional dependency, imported here only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from shelfwise.core.errors import ConfigError

ADDRESS_ENV = "SHELFWISE_RAY_ADDRESS"
TMP_ROOT = Path("/tmp/shelfwise-ray")


def ray_module(what: str = "--engine ray") -> Any:
    """``ray``, or a ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs Ray", hint="pip install 'shelfwise[distributed]' (ray[train]==2.58.0)"
        ) from exc
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, what: str = "--engine ray") -> bool:
    """Join the cluster at ``address`` (or ``SHELFWISE_RAY_ADDRESS``), or start a local one, unless
    this process is connected already. True when this call connected (the caller shuts it down)."""
    ray = ray_module(what)
    if ray.is_initialized():
        return False
    address = address or os.environ.get(ADDRESS_ENV) or None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        TMP_ROOT.mkdir(parents=True, exist_ok=True)
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _temp_dir=str(TMP_ROOT),
            object_store_memory=1 << 30,
            **quiet,
        )
    return True
