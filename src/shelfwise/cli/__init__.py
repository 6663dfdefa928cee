"""Layer 8: the ``shelfwise`` command. Thin: parses arguments, calls the layers below, prints."""
