"""One module per group of commands; each `cmd_<name>(args) -> exit code`."""
