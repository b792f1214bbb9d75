"""What the "Schedule a change" form holds, so a refused submit shows it again untouched.

The form can be filled with the entry's current fields ("Load current
content"); each loaded value travels along in a hidden input, so a field the
user did not touch is not part of the change, even if it still shows a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from werkzeug.datastructures import MultiDict

from ccadmin.models import Campaign

FIELD_PREFIX = "field_"
LOADED_PREFIX = "loaded_"
CLEAR_PREFIX = "clear_"


def _normalised(value: str) -> str:
    # Browsers submit a textarea's line breaks as CRLF.
    return value.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class ScheduleInput:
    """The schedule form's inputs, as typed or as loaded from the entry."""

    user_id: str = ""
    run_at: str = ""
    values: dict[str, str] = field(default_factory=dict)
    # The entry's fields when they were loaded into the form (None: not loaded).
    loaded: dict[str, str] | None = None
    clear: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, campaign: Campaign, form: MultiDict) -> ScheduleInput:
        """Every input of a submitted form, kept as typed."""
        names = campaign.field_names
        loaded = None
        if form.get("loaded") == "1":
            loaded = {name: _normalised(form.get(LOADED_PREFIX + name, "")) for name in names}
        return cls(
            user_id=(form.get("user_id") or "").strip(),
            run_at=form.get("run_at") or "",
            values={name: _normalised(form.get(FIELD_PREFIX + name, "")) for name in names},
            loaded=loaded,
            clear={name for name in names if form.get(CLEAR_PREFIX + name)},
        )

    def with_current(self, current: dict[str, str]) -> ScheduleInput:
        """The same input with the fields replaced by the entry's current ones."""
        return ScheduleInput(
            user_id=self.user_id,
            run_at=self.run_at,
            values=dict(current),
            loaded=dict(current),
        )

    def changed_values(self) -> dict[str, str]:
        """The non-blank values the user typed or edited (an untouched loaded value is not)."""
        loaded = self.loaded or {}
        return {
            name: value
            for name, value in self.values.items()
            if value.strip() and (name not in loaded or loaded[name] != value)
        }
