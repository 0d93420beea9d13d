"""The `gdkvm` command line: one module per command, thin over library functions."""
