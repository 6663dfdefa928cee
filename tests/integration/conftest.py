"""The service tests' store and registry (``api_fixtures``), registered here so that the session
scope holds: a fixture imported into each test module is a fixture of that module, built again for
every module that imports it."""

from tests.integration.api_fixtures import served, served_template  # noqa: F401
