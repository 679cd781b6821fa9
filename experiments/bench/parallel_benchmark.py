"""The parallel-in-time loop against the sequential ones: a benchmark, not a test.

  python -m experiments.bench.parallel_benchmark --times=1000,4000 --hidden=64 --reps=5

One training step (forward and gradient of a squared-output loss) of an RNNStack, batch
16, for each cell and loop, interleaved in one process (medians of --reps; the first
call compiles and is not timed). Prints milliseconds, the ratio to the sequential
baseline of the same cell (fused for gru/lstm, scan for the others: above 1, parallel is
faster), the Newton iterations of the parallel loop (0: one exact scan) and XLA's
temporary memory of the compiled step. `--json=PATH` writes the rows.
`--sequential_adjoint` adds, for the Newton cells, the parallel forward with the adjoint
run backwards one step after another (`lax.scan`) in place of the associative scan.
"""

import json
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

import seqrnn
from seqrnn import parallel

_TIMES = flags.DEFINE_list('times', ['1000', '4000'], 'sequence lengths')
_HIDDEN = flags.DEFINE_list('hidden', ['64'], 'hidden sizes')
_LAYERS = flags.DEFINE_integer('layers', 1, 'stacked layers')
_CELLS = flags.DEFINE_list('cells', ['gru', 'lstm', 'min_gru', 'diag_gru'], 'cells')
_REPS = flags.DEFINE_integer('reps', 5, 'timed calls of each step')
_JSON = flags.DEFINE_string('json', '', 'write the rows here (after each length, so a timeout '
                            'keeps what was measured)')
_DENSE_UP_TO = flags.DEFINE_integer('dense_newton_up_to', 65536, 'longest T at which gru and '
                                    'lstm run the parallel (Newton) loop')
_SEQUENTIAL_ADJOINT = flags.DEFINE_bool('sequential_adjoint', False, 'also time the Newton '
                                        "cells' parallel forward with a sequential adjoint")


def _sequential_adjoint(step, diagonal, how, iterations, tol, residuals, cotangents):
  """seqrnn.parallel's backward as lax.scan of each step's VJP, from the end."""
  v, s0, xs, real, resets, states = residuals
  prevs = jnp.concatenate([s0[None], states[:-1]])
  return (*parallel._sequential_gradients(step, v, s0, xs, real, resets, prevs, cotangents[0]),
          None, None)


def _step(module, params, x, lengths):
  def loss(params):
    out = module.apply(params, x) if lengths is None else module.apply(params, x, lengths)
    return (out ** 2).mean()
  return jax.jit(jax.value_and_grad(loss))


def _iterations(module, params, x, lengths):
  _, state = module.apply(params, x, lengths, mutable=['intermediates'])
  leaves = jax.tree.leaves(state)
  return max(int(l) for l in leaves) if leaves else 0


def main(argv):
  del argv
  rows = []
  for hidden in map(int, _HIDDEN.value):
    for time_steps in map(int, _TIMES.value):
      x = jax.random.normal(jax.random.key(0), (16, time_steps, 8))
      lengths = jnp.full((16,), time_steps)
      cases = {}
      for cell in _CELLS.value:
        base = 'fused' if cell in ('gru', 'lstm') else 'scan'
        gpu_lstm = cell == 'lstm' and jax.default_backend() == 'gpu'
        newton = cell in ('gru', 'lstm') and time_steps > _DENSE_UP_TO.value
        for impl in (base,) + (() if newton else ('parallel',)) + (('cudnn',) if gpu_lstm else ()):
          cases[(cell, impl)] = seqrnn.RNNStack(cell=cell, hidden_size=hidden,
                                                num_layers=_LAYERS.value, impl=impl,
                                                return_carry=False)
        if _SEQUENTIAL_ADJOINT.value and (cell, 'parallel') in cases and cell != 'min_gru':
          cases[(cell, 'par/seqadj')] = cases[(cell, 'parallel')]
      if 'gru' in _CELLS.value:
        cases[('gru', 'flax')] = nn.RNN(nn.GRUCell(hidden))
      compiled, times = {}, {k: [] for k in cases}
      for key, module in cases.items():
        params = (module.init(jax.random.key(1), x[:, :4]) if key[1] == 'flax' else
                  module.init(jax.random.key(1), x[:, :4], jnp.full((16,), 4)))
        args = (x, None) if key[1] == 'flax' else (x, lengths)
        if key[1] == 'par/seqadj':
          parallel._solve.defvjp(parallel._solve_fwd, _sequential_adjoint)
        step = _step(module, params, *args).lower(params).compile()  # traced now, kept as is
        parallel._solve.defvjp(parallel._solve_fwd, parallel._solve_bwd)
        memory = step.memory_analysis()
        compiled[key] = (step, params, getattr(memory, 'temp_size_in_bytes', 0),
                         _iterations(module, params, *args) if 'par' in key[1] else 0)
        jax.block_until_ready(step(params))
      for _ in range(_REPS.value):  # interleaved: the machine's noise falls on every case
        for key, (step, params, _, _) in compiled.items():
          start = time.perf_counter()
          jax.block_until_ready(step(params))
          times[key].append(time.perf_counter() - start)
      for (cell, impl), (_, _, memory, iterations) in compiled.items():
        base = 'fused' if cell in ('gru', 'lstm') else 'scan'
        ms = 1000 * statistics.median(times[(cell, impl)])
        ratio = statistics.median(times[(cell, base)]) / statistics.median(times[(cell, impl)])
        row = dict(time=time_steps, hidden=hidden, cell=cell, impl=impl, ms=ms,
                   ratio_vs_sequential=ratio, newton_iterations=iterations,
                   temp_mb=memory / 2 ** 20)
        rows.append(row)
        print(f'T={time_steps:6d} H={hidden:4d} {cell:9s} {impl:9s} {ms:10.1f} ms  '
              f'x{ratio:5.2f} vs {base}  iterations {iterations:4d}  temp {memory / 2**20:8.1f} MB',
              flush=True)
      if _JSON.value:
        with open(_JSON.value, 'w') as f:
          json.dump({'device': str(jax.devices()[0]), 'rows': rows}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
