"""Security headers on every admin response, and the per-request CSP nonce.

The policy allows scripts from our own origin only (jQuery, Bootstrap and
Flask-Admin's files, plotly.js, our static files) plus the few inline
scripts Flask-Admin writes, each carrying this request's nonce. Inline event
handlers (`onclick=`) never run; the templates Flask-Admin writes them in
are overridden (templates/admin/actions.html, templates/admin/model/).
Styles may be inline: Bootstrap's components and plotly set style
attributes and insert <style> elements, and styles cannot run code.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, request

# A year; sent only on HTTPS responses (RFC 6797 ignores it over HTTP anyway).
HSTS = "max-age=31536000"
REFERRER_POLICY = "same-origin"


# Kept in the WSGI environ: it lives exactly as long as the request.
NONCE_KEY = "ccadmin.csp_nonce"


def csp_nonce() -> str:
    """This request's nonce, made on first use (Flask-Admin calls it per inline script)."""
    nonce = request.environ.get(NONCE_KEY)
    if nonce is None:
        nonce = request.environ[NONCE_KEY] = secrets.token_urlsafe(18)
    return nonce


def content_security_policy(nonce: str | None) -> str:
    """The policy for one response; the nonce is present only if the page used one."""
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "")
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            # Bootstrap's icons and plotly's toolbar are data: URLs.
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def add_security_headers(response: Response) -> Response:
    """The headers every response carries (a view may have set its own first)."""
    headers = response.headers
    policy = content_security_policy(request.environ.get(NONCE_KEY))
    headers.setdefault("Content-Security-Policy", policy)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    # For browsers that predate frame-ancestors.
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every response and the nonce to every template."""
    app.after_request(add_security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
