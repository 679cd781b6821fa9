import pathlib
import sys

import jax
import pytest

# The tests import tests/helpers.py and tests/reference.py, also when run from elsewhere.
sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(autouse=True)
def _float32_matmuls():
  with jax.default_matmul_precision('float32'):
    yield
