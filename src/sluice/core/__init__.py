"""The request path: context, pipeline steps, relay."""
