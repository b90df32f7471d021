"""Helpers shared by the tests: real processes, real HTTP clients, no fakes."""
