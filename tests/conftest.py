import pytest

from masquerade.datasets import lfw_root


@pytest.fixture(scope="session")
def lfw():
    """Root of the shared LFW112 faces; skips the test when the data is absent."""
    root = lfw_root()
    if not (root / "pairs.txt").is_file():
        pytest.skip(f"shared face data not found at {root} (set MASQUERADE_DATA)")
    return root
