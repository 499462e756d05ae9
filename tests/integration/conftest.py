import pytest


@pytest.fixture(autouse=True)
def _ledger_invariants_after_each_test(ledger):
    """Every integration test ends with the ledger invariants checked."""
