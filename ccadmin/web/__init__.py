"""The admin's web process: its server (`python -m ccadmin.web`), HTTP framing, form base.

Kept light: the API's server imports `framing` too and must not pull in Flask.
"""
