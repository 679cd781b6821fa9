"""Where a train step's time goes: a jax.profiler trace, summarised by kind of op.

  python -m experiments.bench.profile_step --case=gru_cls --impl=seqrnn
  python -m experiments.bench.profile_step --case=gru_cls --impl=flax
  python -m experiments.bench.profile_step --config=experiments/configs/turkish_pos.py --impl=flax

Traces a few jitted train steps of a benchmark case (`experiments/bench/benchmark.py`),
or of a config's model on the batch of its training step `--batch_step` (with
`--impl=flax`, Flax's stack in its place, as in `experiments.bench.e2e_benchmark`),
and sums the device-side op times of the trace per step, split into matmuls and
other ops, inside the time loops (ops run once per timestep) or outside them.
The trace itself stays in --trace_dir for Perfetto or TensorBoard.
"""

import collections
import gzip
import json
import pathlib
import re
import tempfile

import jax
from absl import app, flags

from ml_collections import config_flags

from experiments.bench import benchmark
from seqrnn import run as run_lib
from seqrnn.data import batching
from seqrnn.models import build_model

flags.DEFINE_string('case', 'gru_cls', 'A case of experiments/bench/benchmark.py.')
config_flags.DEFINE_config_file('config', None, 'A config to profile instead of a case.')
flags.DEFINE_integer('batch_step', 0, 'With --config: the training step whose batch is used.')
flags.DEFINE_enum('impl', 'seqrnn', ['seqrnn', 'flax'], 'Which stack to profile.')
flags.DEFINE_integer('steps', 5, 'Traced steps.')
flags.DEFINE_integer('top', 12, 'How many of the costliest ops to list.')
flags.DEFINE_string('trace_dir', None, 'Where the trace goes (default: a temporary directory).')
FLAGS = flags.FLAGS

# Host-side and enclosing events; everything else in the trace is one op (a thunk).
# XLA:CPU runs matmuls as YNNPACK/XNNPACK fusions or dots; GPUs as gemm kernels.
_MATMUL = re.compile(r'ynn|xnn|^dot|gemm|cublas|cutlass', re.IGNORECASE)
_ENCLOSING = re.compile(r'^(\$|ThunkExecutor|PjitFunction|CommonPjRt|ParseArguments|end: |while)')


def config_step(config):
  """(a train step closure, the batch's padded length, a name) of `config`'s model."""
  config.train.compilation_cache = ''
  dataset, buckets = run_lib.prepare_data(config)
  batch = jax.device_put(batching.train_batch(
      dataset.splits['train'], FLAGS.batch_step, batch_size=config.data.batch_size,
      buckets=buckets, seed=config.seed, pack=config.data.pack and FLAGS.impl == 'seqrnn'))
  model = (build_model(config.task, config.model, num_classes=dataset.num_classes,
                       vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
           if FLAGS.impl == 'seqrnn' else benchmark.flax_model(config, dataset))
  trainer = benchmark.Trainer(model, config, batch)
  shape = tuple(batch['inputs'].shape)
  return lambda: trainer.train(batch), shape[1], f'{config.data.name} batch {shape}'


def main(argv):
  del argv
  if FLAGS.config:
    step, num_steps, title = config_step(FLAGS.config)
  else:
    case = benchmark.CASES[FLAGS.case]
    batch = benchmark.make_batch(case)
    if FLAGS.impl == 'seqrnn':
      step = benchmark.seqrnn_steps(case, batch)['train']
    else:
      step = benchmark.jax_steps(benchmark.FlaxBaseline(case), case, batch)['train']
    num_steps, title = case.time, FLAGS.case
  jax.block_until_ready(step())  # compile outside the trace
  trace_dir = FLAGS.trace_dir or tempfile.mkdtemp(prefix='seqrnn_profile_')
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  for _ in range(FLAGS.steps):
    out = step()
  jax.block_until_ready(out)
  jax.profiler.stop_trace()

  trace = json.load(gzip.open(next(pathlib.Path(trace_dir).rglob('perfetto_trace.json.gz'))))
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  total_us, calls = collections.Counter(), collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and not _ENCLOSING.match(e.get('name', '')):
      total_us[e['name']] += e.get('dur', 0)
      calls[e['name']] += 1
  per_step = {name: us / 1e3 / FLAGS.steps for name, us in total_us.items()}
  groups = collections.Counter()
  for name, ms in per_step.items():
    kind = 'matmul' if _MATMUL.search(name) else 'other'
    where = 'in loop' if calls[name] // FLAGS.steps >= num_steps else 'outside loops'
    groups[kind, where] += ms
  print(f'{FLAGS.impl} {title}: op time per train step, {FLAGS.steps} traced steps '
        f'(trace in {trace_dir})')
  for (kind, where), ms in sorted(groups.items(), key=lambda kv: -kv[1]):
    print(f'  {ms:7.1f} ms  {kind:6s} {where}')
  print(f'  {sum(groups.values()):7.1f} ms  all ops')
  print('costliest ops (ms per step, calls per step):')
  for name, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[:FLAGS.top]:
    print(f'  {ms:7.2f} ms {calls[name] // FLAGS.steps:5d}  {name}')


if __name__ == '__main__':
  app.run(main)
