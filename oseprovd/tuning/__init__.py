"""Tuning engine: hardware-aware profiles applied, verified and reverted exactly."""
