"""The security tests see every request the way production does: with a fresh `g`.

The shared `app` fixture keeps one app context open for the whole test, so
Flask would let requests share `g`, where Flask-Login caches the loaded user
and Flask-WTF the CSRF token. Session checks run when the user is loaded, so
here each request starts without those caches, as it does under waitress.
"""

from __future__ import annotations

import pytest
from common.support import FRESH_REQUEST_STATE


@pytest.fixture
def app(app):
    app.config[FRESH_REQUEST_STATE] = True
    return app
