"""The ``sluice`` command (typer)."""
