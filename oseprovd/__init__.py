"""oseprovd: the OSE provisioning daemon."""

__version__ = "0.1.0"
