"""Helpers shared by the tests: fakes of third-party APIs, loopback servers, worlds to test in."""
