"""The `router` command and its subcommands (`serve`, `simulate`, `numbers`, `check-config`)."""
