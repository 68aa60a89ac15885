"""Spatial crowdsourcing core (placeholder; the package owner fills in the re-exports)."""
