"""The base of every form: a length limit is shown and checked, never enforced by truncation.

WTForms renders a `Length(max=...)` validator as the HTML `maxlength`
attribute, and a browser silently cuts a longer paste to fit. Here the limit
becomes `data-max-length` instead, for static/admin/char-counter.js's live
counter; the validator still refuses a longer value with its message.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm

MAX_LENGTH_ATTRIBUTE = "data-max-length"


class UntruncatedForm(FlaskForm):
    """A Flask-WTF form whose inputs never carry `maxlength`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self:
            limit = field.flags.maxlength
            if limit is None:
                continue
            del field.flags.maxlength
            field.render_kw = {MAX_LENGTH_ATTRIBUTE: limit, **(field.render_kw or {})}
