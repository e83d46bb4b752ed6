"""PostgreSQL for tests: the throw-away cluster `.ci/postgres` starts (bash .ci/run sources it).

Each test that asks for :func:`postgres_url` gets a fresh, empty database of its own on that
cluster, dropped afterwards. Without the cluster those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

TEST_URL_VARIABLE = "SECOND_LOOK_TEST_DATABASE_URL"


def cluster_url() -> str | None:
    return os.environ.get(TEST_URL_VARIABLE, "").strip() or None


def _with_database(url: str, name: str) -> str:
    # (urlunsplit would drop the "//" of a URL without a host: postgresql:///db?host=/tmp/x)
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    _, query_mark, query = path.partition("?")
    return f"{scheme}://{netloc}/{name}{query_mark}{query}"


def fresh_database() -> Iterator[str]:
    """A new empty database on the test cluster; dropped when the generator is closed."""
    url = cluster_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests need {TEST_URL_VARIABLE} (bash .ci/run starts a throw-away "
            "cluster and sets it; by hand: `. .ci/postgres` first)."
        )
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
