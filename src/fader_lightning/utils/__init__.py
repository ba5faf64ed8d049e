"""Small shared utilities: atomic writes and run provenance."""
