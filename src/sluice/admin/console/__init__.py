"""The web console, served by the admin listener at ``/`` (docs/console.md)."""
