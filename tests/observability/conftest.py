"""The service-tier fixtures (the real app over the fake engine) for the observability tests."""

from tests.api.conftest import client, make_client  # noqa: F401
