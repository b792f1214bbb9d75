"""What an entry is: its validation, its history, its preview, the Braze snippet, demo data.

Plain modules shared by the admin, the ingest API and imports; nothing here
writes or publishes (that is ccadmin/publishing/).
"""
