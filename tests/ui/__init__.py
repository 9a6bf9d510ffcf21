"""Browser tests of the web UI (a package: its fixtures end with its last test)."""
