"""Factory reset engine: baseline, analyze, preview, execute, roll back (no D-Bus)."""
