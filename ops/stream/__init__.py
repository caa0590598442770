"""Passes over a PEF store, knowing nothing of NPEFF: residency, loading, scheduling, runners."""
