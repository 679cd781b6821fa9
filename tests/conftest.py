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


@pytest.fixture(autouse=True, scope='module')
def _release_compiled_programs():
  """Each test module's compiled programs are dropped after it. A worker keeps every program
  it compiled, and each holds memory maps of its machine code: late in the full suite a worker
  segfaulted inside XLA compiling a train step (three runs of three, in the same test; alone it
  passes), as a process does when it runs out of maps (vm.max_map_count: 65,530 here)."""
  yield
  jax.clear_caches()
