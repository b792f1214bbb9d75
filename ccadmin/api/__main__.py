"""`python -m ccadmin.api`: the Connected Content endpoint (the Procfile's `api`)."""

from __future__ import annotations

import sys

from ccadmin import config
from ccadmin.api.server import serve


def main() -> int:
    """Load settings from the environment and serve until stopped."""
    try:
        settings = config.load()
    except config.ConfigError as error:
        print(f"ccadmin.api: {error}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
