"""exquisite-store: grow an image step by step and keep every step."""

__version__ = "0.1.0"
