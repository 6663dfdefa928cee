"""`shelfwise` commands for evaluate; heavy imports go inside the commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
