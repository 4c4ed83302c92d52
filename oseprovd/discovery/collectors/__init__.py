"""One module per collector; each exposes `collect(roots) -> <pydantic model>`."""
