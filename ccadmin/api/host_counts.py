"""The counts of every API process behind one port, so one scrape sees the whole host.

Processes that share a port cannot be scraped one by one: the kernel picks
which one answers. So each process writes its cumulative counts to a file of
its own once a second (the metrics flusher does, off the request path), in a
folder named for the port; the process that answers a scrape adds its
siblings' files to its own live counts. A child that exits leaves its file, so
a restarted child never makes a counter go down. The folder is emptied when
the API starts: a counter reset, which Prometheus expects of a restart.

A sibling's counts are at most a second old in a scrape; the answering
process's own are current.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from ccadmin.config import Settings, private_directory

log = logging.getLogger(__name__)

SUFFIX = ".json"


def folder(settings: Settings) -> Path:
    """Where this host's API processes on this port share their counts."""
    if settings.api_metrics_dir is not None:
        return settings.api_metrics_dir
    return settings.instance_path / f"api-counts-{settings.api_port}"


def reset(settings: Settings) -> None:
    """Start the host's counts from zero: called once, before any process serves."""
    shared = folder(settings)
    shutil.rmtree(shared, ignore_errors=True)
    private_directory(shared)


def publish(settings: Settings, totals: Counter) -> None:
    """Replace this process's file with its cumulative counts (atomically)."""
    shared = folder(settings)
    path = shared / f"{os.getpid()}{SUFFIX}"
    partial = shared / f".{os.getpid()}.tmp"
    document = [[list(key), value] for key, value in totals.items()]
    try:
        private_directory(shared)
        partial.write_text(json.dumps(document, separators=(",", ":")))
        os.replace(partial, path)
    except OSError as error:
        log.warning("API counts not shared with the host's other processes: %s", error)


def host_totals(settings: Settings, own: Counter) -> Counter:
    """This process's live counts plus every sibling's last file, dead ones included."""
    totals = Counter(own)
    mine = f"{os.getpid()}{SUFFIX}"
    try:
        files = [path for path in folder(settings).glob(f"*{SUFFIX}") if path.name != mine]
    except OSError:
        return totals
    for path in files:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # gone or being replaced: its next write is a second away
        for key, value in document:
            totals[tuple(key)] += value
    return totals
