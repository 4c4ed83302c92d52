"""The D-Bus layer: decode, validate, authorize, call an engine, encode."""
