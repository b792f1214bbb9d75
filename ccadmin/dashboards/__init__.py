"""Live dashboards in the admin: pages drawn with plotly, refreshed from JSON endpoints.

plotly.js is the copy that ships inside the pinned `plotly` package, served
from here under a versioned URL with a long cache life: no CDN, and no 4 MB
file in the repository.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from flask import Blueprint, Flask, Response, send_file
from flask_admin import Admin

from ccadmin.dashboards.views import LiveMetricsView

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# The URL carries the package version, so a year of caching is safe.
PLOTLY_MAX_AGE = 365 * 86_400

vendor = Blueprint("vendor", __name__)


@vendor.route(f"/vendor/plotly-{plotly.__version__}.min.js")
def plotly_js() -> Response:
    """The plotly.js bundled with the installed plotly package."""
    response = send_file(PLOTLY_JS, mimetype="text/javascript", max_age=PLOTLY_MAX_AGE)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def init_app(app: Flask, admin: Admin) -> None:
    """Add the dashboard views to the admin and serve plotly.js."""
    app.register_blueprint(vendor)
    admin.add_view(LiveMetricsView(name="Live metrics", endpoint="metrics", url="/admin/metrics"))
