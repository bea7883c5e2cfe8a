"""The server fixtures (``make_app``, ``live``) serve the hostile suite too."""

from tests.server.conftest import live, make_app

__all__ = ["live", "make_app"]
