"""Attacks on a real deployment: `axis serve` as a process, driven through the real CLI and SDK.

Each test here is an attack that once succeeded (issue 8, and issue 9's on the broker) and must now
fail, on both shipped configurations (embedded + SQLite, RabbitMQ + PostgreSQL): the deployments are
the end-to-end tests' (`tests/e2e/conftest.py`), one fresh deployment per test, the agencies on the
gateway road. What the attacks look at and write with (the store's inbox, states, audit entries; a
publish onto `axis.intake`; an agency's edge) is in `support.py`.
"""
from tests.e2e.conftest import deployment, e2e_pki, embedded_deployment, rabbit_deployment  # noqa: F401
from tests.store.conftest import pg_template  # noqa: F401
