"""Helpers shared by the tests: starting processes, logging in, seeding content, reading Redis."""
