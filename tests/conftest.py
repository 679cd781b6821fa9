import os
import pathlib
import sys

# The tests compile hundreds of small programs, and XLA's CPU backend compiles them faster at
# its lowest optimisation level (a cold test_masking.py in 52 s against 92 s; a vectorised group
# and the fault tests 56 s against 68 s). What they check is the same: the programs' operations,
# to the tolerances each test states (the flag changes code generation, not what is computed).
# Before JAX starts its backend; subprocesses inherit it (helpers.xla_env adds devices to it).
os.environ['XLA_FLAGS'] = ' '.join(filter(None, [os.environ.get('XLA_FLAGS'),
                                                 '--xla_backend_optimization_level=0']))
# Most of the suite's time is compiling, and the same programs are compiled again and again: in
# each test module (their programs are dropped after it, below), each xdist worker and each
# subprocess, and wherever a function is built anew for each call (a Flax scan's body, a test's
# closure, the eager ops of `model.init`: thousands of programs of a few milliseconds). All of
# them go to the runs' persistent cache, whatever their compile time, so each compiles once
# (HOME empty, 2 cores: 432 and 460 s from fresh clones against 608 and 619 s before; 271 s warm;
# about 50 MB of cache). Subprocesses inherit the threshold; their runs use the same directory.
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import jax  # noqa: E402
import pytest  # noqa: E402

from seqrnn.config import default_config  # noqa: E402
from seqrnn.prepare import use_compilation_cache  # noqa: E402

jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)  # if JAX was imported before
use_compilation_cache(default_config().train.compilation_cache,
                      default_config().train.compilation_cache_gib)

# The tests import tests/helpers.py and tests/reference.py, also when run from elsewhere.
sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(autouse=True)
def _float32_matmuls():
  with jax.default_matmul_precision('float32'):
    yield


@pytest.fixture(autouse=True, scope='module')
def _release_compiled_programs():
  """Each test module's compiled programs are dropped after it. A worker kept every program it
  compiled, and late in the full suite one segfaulted inside XLA loading or compiling a train
  step (four runs of four, in the same test of test_workdir.py; alone it passes). The likely
  reason, not proven: each program holds memory maps of its machine code, and a process has at
  most vm.max_map_count of them (65,530 here). With this, no crash in the runs since."""
  yield
  jax.clear_caches()
