"""The relay's tables in relay.sqlite, as an append-only list of migrations."""
