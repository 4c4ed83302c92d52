"""Snapshot engine: snapshots, undo of a change, rollback and retention, per backend."""
