"""The sweep layer: a job in a child process (child) and the launcher helpers (launchers)."""
