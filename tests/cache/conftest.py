"""The service-tier fixtures (the real app over the fake engine) for the cache tests."""

from tests.api.conftest import make_client  # noqa: F401
