"""Backends: images + masks + prompts in, images out (no directions)."""
