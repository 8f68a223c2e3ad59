"""The `camfleet` command line."""
