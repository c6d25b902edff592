"""The fuzz tests run on the end-to-end tests' PKI and deployments (tests/e2e/conftest.py)."""
from tests.e2e.conftest import e2e_pki  # noqa: F401 - fixture reused
from tests.store.conftest import pg_template  # noqa: F401 - fixture reused
