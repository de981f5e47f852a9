"""The step transaction and its events."""
