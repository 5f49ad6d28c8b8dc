"""Fixtures of the integration tests (the real services come from tests/conftest.py)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from opscenter.services import Services, create_topics, open_services
from opscenter.settings import Settings


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The process's services over this test's topics and database (a test module may override it)."""
    await create_topics(settings)
    s = await open_services(settings)
    yield s
    await s.aclose()
