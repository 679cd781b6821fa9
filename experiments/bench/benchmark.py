"""Speed of seqrnn's stack against the idiomatic Flax stack (and PyTorch, if importable).

  python -m experiments.bench.benchmark                 # all cases, a table
  python -m experiments.bench.benchmark --json --cases=gru_cls --reps=30

Each case builds every implementation on the same data, compiles it (timed), then
times them interleaved step by step, so that machine noise hits all alike, and
reports medians. `ratio_vs_flax` is the Flax baseline's median time over this
implementation's: above 1 is faster than Flax. GFLOP/s counts the matmuls
(training as 3x the forward pass) and is compared with a large matmul's rate
measured in the same run. Runs on the default JAX backend (CPU, GPU or TPU).
"""

import dataclasses
import json
import time
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from seqrnn import run as run_lib
from seqrnn import tasks as tasks_lib
from seqrnn import train as train_lib
from seqrnn.config import default_config
from seqrnn.models import build_model

flags.DEFINE_list('cases', None, 'Cases to run (default: all).')
flags.DEFINE_list('impls', ['seqrnn', 'flax', 'torch'], 'Implementations to compare: seqrnn '
                  '(its default loop, fused for GRU/LSTM), seqrnn_scan (its nn.scan loop), '
                  'seqrnn_remat (fused, model.remat_chunk=auto), flax, torch.')
flags.DEFINE_list('modes', ['train', 'infer'], 'train: forward+backward+update; infer: forward.')
flags.DEFINE_integer('reps', 20, 'Timed steps per implementation (after compilation).')
flags.DEFINE_bool('json', False, 'Print one JSON object a line instead of a table.')
flags.DEFINE_string('dtype', 'float32', 'seqrnn computation dtype (float32 or bfloat16).')
flags.DEFINE_integer('unroll', 1, 'seqrnn scan unroll.')
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Case:
  cell: str
  task: str
  batch: int
  time: int
  features: int = 28
  hidden: int = 200
  layers: int = 3
  dropout: float = 0.5
  classes: int = 10
  variable_lengths: bool = False


CASES = {
    'gru_cls': Case('gru', 'classification', 128, 28),
    'lstm_cls': Case('lstm', 'classification', 128, 28),
    'gru_label': Case('gru', 'labelling', 64, 100),
    'lstm_label': Case('lstm', 'labelling', 64, 100),
    # Masking cost: the same work as gru_label with lengths spread over [50, 100].
    'gru_label_lengths': Case('gru', 'labelling', 64, 100, variable_lengths=True),
    # Long sequences (memory): compare impls seqrnn, seqrnn_remat and flax.
    'lstm_long_1k': Case('lstm', 'classification', 16, 1000, hidden=128, layers=2),
    'lstm_long_4k': Case('lstm', 'classification', 16, 4000, hidden=128, layers=2),
    'lstm_long_16k': Case('lstm', 'classification', 16, 16000, hidden=128, layers=2),
}


def make_batch(case, seed=0):
  rng = np.random.default_rng(seed)
  lengths = (rng.integers(case.time // 2, case.time + 1, case.batch) if case.variable_lengths
             else np.full(case.batch, case.time))
  shape = (case.batch,) if case.task == 'classification' else (case.batch, case.time)
  return {'inputs': rng.normal(size=(case.batch, case.time, case.features)).astype(np.float32),
          'lengths': lengths.astype(np.int32),
          'labels': rng.integers(0, case.classes, shape).astype(np.int32)}


def forward_flops(case):
  gates = {'gru': 3, 'lstm': 4}[case.cell] * case.hidden
  rnn = sum(2 * case.batch * case.time * (fan_in + case.hidden) * gates
            for fan_in in [case.features] + [case.hidden] * (case.layers - 1))
  head_steps = case.time if case.task == 'labelling' else 1
  return rnn + 2 * case.batch * head_steps * case.hidden * case.classes


class FlaxBaseline(nn.Module):
  """The idiomatic Flax stack: nn.RNN layers, nn.Dropout between them, a dense head."""
  case: Case

  @nn.compact
  def __call__(self, inputs, lengths, *, train=False):
    c = self.case
    x = inputs
    for _ in range(c.layers):
      cell = nn.GRUCell(c.hidden) if c.cell == 'gru' else nn.OptimizedLSTMCell(c.hidden)
      x = nn.RNN(cell)(x, seq_lengths=lengths)
      x = nn.Dropout(c.dropout, deterministic=not train)(x)
    if c.task == 'classification':
      x = x[jnp.arange(x.shape[0]), lengths - 1]
    return nn.Dense(c.classes)(x)


# The same model as a config's with Flax's stack in place of seqrnn's: for
# experiments.bench.e2e_benchmark and experiments.bench.profile_step on real data.
class FlaxStack(nn.Module):
  """Flax's idiomatic stack with RNNStack's call: nn.RNN layers given seq_lengths."""
  cell: str
  hidden_size: int
  num_layers: int
  dropout_rate: float
  bidirectional: bool

  @nn.compact
  def __call__(self, x_btf, lengths_b, *, train, segments_bt=None, return_carry=False):
    if segments_bt is not None:
      raise ValueError("Flax's nn.RNN reads one sequence a row: no packed rows")

    def rnn():
      cell = (nn.OptimizedLSTMCell(self.hidden_size) if self.cell == 'lstm'
              else nn.GRUCell(self.hidden_size))
      return nn.RNN(cell)
    x = x_btf
    for _ in range(self.num_layers):
      layer = nn.Bidirectional(rnn(), rnn()) if self.bidirectional else rnn()
      x = layer(x, seq_lengths=lengths_b)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return (None, x) if return_carry else x


def flax_model(config, dataset):
  """The config's model with FlaxStack in place of seqrnn's RNNStack."""
  m = config.model
  if m.cell not in ('gru', 'lstm') or m.residual or m.merge != 'concat' or m.variational_dropout \
      or m.zoneout_hidden or m.zoneout_cell or m.initial_carry != 'zeros':
    raise ValueError('the Flax stack stands in for plain gru/lstm stacks (concat merge, no '
                         'residual, recurrent regulariser or learned initial carry)')
  model = build_model(config.task, m, num_classes=dataset.num_classes,
                      vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
  stack = FlaxStack(m.cell, m.hidden_size, m.num_layers, m.dropout_rate, m.bidirectional)
  return model.clone(encoder=model.encoder.clone(stack=stack))


class Trainer:
  """One model's jitted train step over the given batches, timed.

  `lib`: the modules `run`, `train` and `tasks` that give the train state and
  step: seqrnn's own by default (another checkout's in `experiments.bench.e2e_benchmark
  --baseline`).
  """

  def __init__(self, model, config, first_batch, lib=None):
    lib = lib or types.SimpleNamespace(run=run_lib, train=train_lib, tasks=tasks_lib)
    init_key, self.rng = lib.run.seed_keys(config.seed)
    state = lib.train.create_train_state(
        init_key, model, first_batch,
        lib.train.make_optimizer(config.optim, config.train.num_steps),
        lib.tasks.get_task(config.task))
    self.state = jax.device_put(state)
    self.step = jax.jit(lib.train.train_step, donate_argnums=0)
    self.compiled = {}
    self.compile_s = 0.0
    self.seconds = 0.0

  def train(self, batch):
    """One step on `batch` (compiled for its shape first if new); its metrics."""
    start = time.perf_counter()
    shape = batch['inputs'].shape
    if shape not in self.compiled:
      self.compiled[shape] = self.step.lower(self.state, batch, self.rng).compile()
      self.compile_s += time.perf_counter() - start
    self.state, metrics = self.compiled[shape](self.state, batch, self.rng)
    jax.block_until_ready(metrics)
    self.seconds += time.perf_counter() - start
    return metrics


def optim_config():
  return types.SimpleNamespace(name='adam', learning_rate=1e-3, schedule='constant',
                               warmup_steps=0, grad_clip_norm=1.0, weight_decay=0.0)


def jax_steps(model, case, batch):
  """(train, infer) closures over a jitted step and its state, each returning a blocker."""
  state = train_lib.create_train_state(jax.random.key(0), model, batch,
                                       train_lib.make_optimizer(optim_config(), 1000),
                                       tasks_lib.get_task(case.task))
  batch = jax.device_put(batch)
  step = jax.jit(train_lib.train_step, donate_argnums=0)
  infer = jax.jit(lambda params, b: model.apply({'params': params}, b['inputs'], b['lengths']))
  rng = jax.random.key(1)
  box = [state]

  def train():
    box[0], metrics = step(box[0], batch, rng)
    return metrics['loss'][0]

  def temp_mib(fn, *args):  # XLA's scratch memory for one call, from the compiled program
    analysis = fn.lower(*args).compile().memory_analysis()
    return analysis.temp_size_in_bytes / 2**20 if analysis is not None else float('nan')

  # Called after the timed first calls: lowering again reuses their compilation.
  memory = lambda: {'train': temp_mib(step, box[0], batch, rng),
                    'infer': temp_mib(infer, box[0].params, batch)}
  return {'train': train, 'infer': lambda: infer(box[0].params, batch), 'temp_mib': memory}


def seqrnn_steps(case, batch, impl='auto', remat_chunk='0'):
  model_config = default_config().model
  model_config.update(cell=case.cell, hidden_size=case.hidden, num_layers=case.layers,
                      dropout_rate=case.dropout, dtype=FLAGS.dtype, unroll=FLAGS.unroll,
                      impl=impl, remat_chunk=remat_chunk)
  return jax_steps(build_model(case.task, model_config, num_classes=case.classes), case, batch)


def torch_steps(case, batch):
  import torch  # only when present: never a dependency
  torch.manual_seed(0)
  rnn_cls = torch.nn.GRU if case.cell == 'gru' else torch.nn.LSTM
  rnn = rnn_cls(case.features, case.hidden, case.layers, dropout=case.dropout, batch_first=True)
  head = torch.nn.Linear(case.hidden, case.classes)
  drop = torch.nn.Dropout(case.dropout)
  params = list(rnn.parameters()) + list(head.parameters())
  opt = torch.optim.Adam(params, lr=1e-3)
  x = torch.from_numpy(batch['inputs'])
  y = torch.from_numpy(batch['labels']).long()
  lengths = torch.from_numpy(batch['lengths']).long()

  def forward(train):
    rnn.train(train)
    drop.train(train)
    out, _ = rnn(x)
    out = drop(out)
    if case.task == 'classification':
      out = out[torch.arange(len(lengths)), lengths - 1]
    return head(out)

  def train():
    opt.zero_grad()
    logits = forward(True)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, case.classes), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return None

  def infer():
    with torch.no_grad():
      forward(False)
    return None

  return {'train': train, 'infer': infer}


def timed(fn):
  start = time.perf_counter()
  out = fn()
  if out is not None:
    jax.block_until_ready(out)
  return time.perf_counter() - start


def matmul_peak_gflops(n=2048, reps=5):
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  return 2 * n ** 3 / np.median([timed(lambda: dot(a, a)) for _ in range(reps)]) / 1e9


def run_case(name, case, impls, modes, reps):
  batch = make_batch(case)
  builders = {'seqrnn': lambda: seqrnn_steps(case, batch),
              'seqrnn_scan': lambda: seqrnn_steps(case, batch, impl='scan'),
              'seqrnn_remat': lambda: seqrnn_steps(case, batch, remat_chunk='auto'),
              'flax': lambda: jax_steps(FlaxBaseline(case), case, batch),
              'torch': lambda: torch_steps(case, batch)}
  steps, compile_s = {}, {}
  for impl in impls:
    try:
      fns = builders[impl]()
    except ImportError:
      continue  # torch absent
    steps[impl] = fns
    for mode in modes:
      compile_s[impl, mode] = timed(fns[mode])  # first call: trace + compile + run
  memory = {impl: fns['temp_mib']() if 'temp_mib' in fns else {} for impl, fns in steps.items()}
  times = {(impl, mode): [] for impl in steps for mode in modes}
  for _ in range(reps):
    for mode in modes:
      for impl in steps:
        times[impl, mode].append(timed(steps[impl][mode]))
  rows = []
  for (impl, mode), ts in times.items():
    median = float(np.median(ts))
    flax_median = np.median(times['flax', mode]) if ('flax', mode) in times else np.nan
    flops = forward_flops(case) * (3 if mode == 'train' else 1)
    rows.append({'case': name, 'impl': impl, 'mode': mode, 'median_ms': 1e3 * median,
                 'sequences_per_s': case.batch / median, 'compile_s': compile_s[impl, mode],
                 'ratio_vs_flax': float(flax_median / median), 'gflop_per_s': flops / median / 1e9,
                 'temp_mib': memory[impl].get(mode, float('nan'))})
  return rows


def main(argv):
  del argv
  names = FLAGS.cases or list(CASES)
  unknown = sorted(set(names) - set(CASES))
  if unknown:
    raise app.UsageError(f'unknown case(s) {unknown}; known: {sorted(CASES)}')
  peak = matmul_peak_gflops()
  header = (f'backend {jax.default_backend()} ({jax.devices()[0].device_kind}), '
            f'matmul peak {peak:.0f} GFLOP/s, {FLAGS.reps} interleaved reps, medians')
  if FLAGS.json:
    print(json.dumps({'backend': jax.default_backend(), 'matmul_peak_gflop_per_s': peak}))
  else:
    print(header)
    print('| case | impl | mode | median ms | sequences/s | compile s | ratio vs flax | '
          'GFLOP/s (% of peak) | XLA temp MiB |\n|---|---|---|---|---|---|---|---|---|')
  for name in names:
    for row in run_case(name, CASES[name], FLAGS.impls, FLAGS.modes, FLAGS.reps):
      if FLAGS.json:
        print(json.dumps(row), flush=True)
      else:
        print(f'| {row["case"]} | {row["impl"]} | {row["mode"]} | {row["median_ms"]:.1f} | '
              f'{row["sequences_per_s"]:.0f} | {row["compile_s"]:.1f} | '
              f'{row["ratio_vs_flax"]:.2f} | {row["gflop_per_s"]:.0f} '
              f'({100 * row["gflop_per_s"] / peak:.0f}%) | {row["temp_mib"]:.0f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
