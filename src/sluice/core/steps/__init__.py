"""The request path's steps, in order (see ``docs/architecture.md``)."""
