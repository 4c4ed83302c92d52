"""Workflows: named sequences of snapshot, reset and tuning steps run as one job."""
