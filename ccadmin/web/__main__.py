"""The admin's `web` process: waitress with strict HTTP framing and no `Server` banner.

`python -m ccadmin.web --listen=*:$PORT` (Procfile) or `--listen=127.0.0.1:5000`
(`make run`). The same as `waitress-serve --threads=8 --ident= wsgi:app`, with
the framing checks of ccadmin/web/framing.py, which waitress's command line
cannot install.
"""

from __future__ import annotations

import argparse

from waitress import create_server

from ccadmin import config
from ccadmin.web.framing import use_strict_framing

THREADS = 8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ccadmin.web", description=__doc__)
    parser.add_argument(
        "--listen",
        action="append",
        help="HOST:PORT to listen on (repeatable; default *:ADMIN_PORT, else *:$PORT, else *:5000)",
    )
    parser.add_argument("--threads", type=int, default=THREADS)
    arguments = parser.parse_args(argv)
    listen = arguments.listen or [f"*:{config.load().admin_port}"]

    from wsgi import app

    server = create_server(app, listen=" ".join(listen), threads=arguments.threads, ident="")
    use_strict_framing(server)
    server.print_listen("Serving the admin on http://{}:{}")
    server.run()


if __name__ == "__main__":
    main()
