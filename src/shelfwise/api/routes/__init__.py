"""The HTTP routes, one file per resource, over ``shelfwise.serving``'s services container
(``deps`` holds what they share). Ids in paths and bodies are the shop's own; user ids are
pseudonymised with the store's key on the way in, so the API and ingest agree on who is who."""
