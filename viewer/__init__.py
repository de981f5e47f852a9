"""The Flask viewer over one store (app factory; no module-level app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the viewer app; ``EXQ_STORE`` in the config names the store root."""
    app = Flask(__name__)
    app.config.from_mapping(EXQ_STORE=str(Path("exquisite-store").resolve()))
    if test_config:
        app.config.update(test_config)
    return app
