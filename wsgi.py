"""Admin entry point: `flask --app wsgi ...` and the `web` process's WSGI app."""

from ccadmin.app import create_app

app = create_app()
