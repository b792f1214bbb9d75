"""The confirmation step every bulk change goes through, enforced by the server.

The first POST of a bulk action only answers with a page saying how many
entries it changes; that page posts the same form again with `confirm` set to
that number. The action runs only when `confirm` matches the count computed
again at that moment, so a stale or forged confirmation asks again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import request

CONFIRM_INPUT = "confirm"
# Inputs never carried into the confirmation form (it sets its own).
_NOT_CARRIED = frozenset({CONFIRM_INPUT, "csrf_token"})


def confirmed(count: int) -> bool:
    """True when this POST confirms exactly `count` changed entries."""
    return request.form.get(CONFIRM_INPUT) == str(count)


def carried_inputs() -> list[tuple[str, str]]:
    """The submitted form's inputs, to post again with the confirmation."""
    return [
        (name, value)
        for name, values in request.form.lists()
        if name not in _NOT_CARRIED
        for value in values
    ]


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation page shows and posts."""

    title: str
    question: str
    count: int
    action_url: str
    back_url: str
    button: str
    details: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_request(
        cls,
        title: str,
        question: str,
        count: int,
        back_url: str,
        button: str,
        details: Iterable[str] = (),
    ) -> Confirmation:
        """A confirmation that posts this request's form again to the same URL."""
        return cls(
            title=title,
            question=question,
            count=count,
            action_url=request.full_path if request.query_string else request.path,
            back_url=back_url,
            button=button,
            details=tuple(details),
            inputs=tuple(carried_inputs()),
        )

    @property
    def stale(self) -> bool:
        """True when the form was confirmed for another count (the data moved since)."""
        return bool(request.form.get(CONFIRM_INPUT))
