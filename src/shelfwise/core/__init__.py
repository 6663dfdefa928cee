"""Layer 1: settings, errors, ids, clock and logging. Imports nothing else from shelfwise."""
