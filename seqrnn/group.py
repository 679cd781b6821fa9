"""K runs of one shape trained together: one jitted step over a leading model axis.

Runs whose configs differ only in the VECTORISED fields have parameters and
optimiser states of the same shapes. Stacked along a leading axis of K, they
train in one `jax.vmap` of `train_step`, one compilation for all K, with each
run's seed (its initial parameters, dropout and data order), learning rate,
weight decay, clipping norm and dropout, variational dropout and zoneout rates
as arrays (weight decay lives in the optimiser state already). Each run keeps
its own workdir exactly as if it had run alone (config.json, metrics.jsonl, checkpoints, best state, test lines); its
batches are its own, padded to the longest of the K (padding changes no result).
A run whose update is rejected (a NaN, an invalid batch) without
`train.skip_nonfinite` stops alone, its siblings go on.
"""

import contextlib
import json
import pathlib
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from seqrnn import config as config_lib
from seqrnn import run as run_lib
from seqrnn import workdir as workdir_lib
from seqrnn.checkpoint import Checkpoints
from seqrnn.data import batching
from seqrnn.metrics_log import MetricLog
from seqrnn.models import build_model
from seqrnn.tasks import accumulate, get_task, summarize
from seqrnn.train import create_train_state, make_optimizer, train_step, with_hyperparams_of

# Per-model values. Weight decay lives in the optimiser state; the others are
# passed to the vectorised step as arrays: the optimiser's learning rate and
# clipping norm, the stack's regularisation rates.
_OPTIM = ('learning_rate', 'grad_clip_norm')
_RATES = ('dropout_rate', 'variational_dropout', 'zoneout_hidden', 'zoneout_cell')
_ARRAYS = tuple(('optim', f) for f in _OPTIM) + tuple(('model', f) for f in _RATES)
VECTORISED = ('seed', 'optim.weight_decay') + tuple(f'{g}.{f}' for g, f in _ARRAYS)


def group_key(config):
  """Configs with equal keys train together: all fields but VECTORISED equal, and
  clipping and each regulariser on in all or in none (off, it is not in the program)."""
  flat = config_lib.to_flat_dict(config)
  key = {k: v for k, v in flat.items() if k not in VECTORISED}
  key.update({f'{g}.{f} on': flat[f'{g}.{f}'] > 0 for g, f in _ARRAYS})
  return json.dumps(key, sort_keys=True)


def _with_rates(model, rates):
  """`model` (a Classifier or Labeller) with its stack's regularisation `rates`."""
  stack = model.encoder.stack.clone(**rates)
  return model.clone(encoder=model.encoder.clone(stack=stack))


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _take(tree, k):
  return jax.tree.map(lambda x: x[k], tree)


class _Run:
  """One run's host-side state: its workdir's files and its logging window."""

  def __init__(self, config, workdir, start, loop):
    self.config, self.workdir = config, workdir
    self.checkpoints = Checkpoints((workdir / 'checkpoints').absolute(),
                                   config.train.keep_checkpoints)
    self.best = Checkpoints((workdir / 'best').absolute(), 1)
    self.log = MetricLog(workdir, start)
    self.window = {k: tuple(v) for k, v in loop.get('window', {}).items()} or None
    self.skipped = loop.get('skipped', 0)
    self.best_value = loop.get('best')
    self.results, self.error = {}, None

  def close(self):
    for f in (self.log.close, self.checkpoints.close, self.best.close):
      f()


def train_group(configs, workdirs, say=run_lib._say):
  """Trains `configs` (all with one `group_key`) in `workdirs`, together.

  Returns, per run, its results dict (as `train_and_evaluate` returns) or the
  exception that stopped it. Raises ValueError before anything is written if
  the configs do not form a group, or their workdirs hold checkpoints of
  different steps (train those one by one).
  """
  if len({group_key(c) for c in configs}) != 1:
    raise ValueError(f'configs train together only if they differ in {VECTORISED} alone')
  if jax.process_count() > 1:
    raise ValueError('vectorised runs are trained by a single process')
  for c in configs:
    config_lib.validate_config(c)
  workdirs = [pathlib.Path(w) for w in workdirs]
  with contextlib.ExitStack() as stack:
    for config, w in zip(configs, workdirs):
      stack.enter_context(workdir_lib.locked(w))
      run_lib._check_resume(w, config)
      for sub in ('checkpoints', 'best'):
        workdir_lib.check_writable(w / sub, 'the checkpoint directory')
    return _train_group(configs, workdirs, say)


def _restore(workdir, state):
  """(state, loop) of `workdir`'s latest checkpoint, (state, {}) without one."""
  directory = workdir / 'checkpoints'
  if not directory.is_dir():
    return state, {}
  checkpoints = Checkpoints(directory.absolute(), None, read_only=True)
  try:
    return checkpoints.restore(state)
  finally:
    checkpoints.close()


def _train_group(configs, workdirs, say):
  base = configs[0]
  dataset, buckets = run_lib.prepare_data(base)
  split = dataset.splits['train']
  # Each run's own model evaluates it (zoneout's expectation reads the run's rates);
  # the first one, given each run's rates as arrays, trains them all.
  models = [build_model(c.task, c.model, num_classes=dataset.num_classes,
                        vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
            for c in configs]
  model = models[0]
  num_steps = base.train.num_steps
  example = batching.train_batch(split, 0, batch_size=base.data.batch_size, buckets=buckets,
                                 seed=base.seed, pack=base.data.pack)
  fresh = [create_train_state(run_lib.seed_keys(c.seed)[0], model, example,
                              make_optimizer(c.optim, num_steps), get_task(c.task))
           for c in configs]
  restored = [_restore(w, s) for w, s in zip(workdirs, fresh)]
  starts = {int(s.step) for s, _ in restored}
  if len(starts) > 1:
    raise ValueError(f'the runs hold checkpoints of different steps {sorted(starts)}: '
                     f'train them one by one')
  start = starts.pop()
  tx = fresh[0].tx  # the static optimiser the stacked state carries (the step builds its own)
  state = _stack([s.replace(opt_state=with_hyperparams_of(s.opt_state, f.opt_state), tx=tx)
                  for (s, _), f in zip(restored, fresh)])
  runs = []
  for config, workdir, (_, loop) in zip(configs, workdirs, restored):
    run_lib._report_start(workdir, config, start)
    runs.append(_Run(config, workdir, start, loop))
  keys = np.stack([np.asarray(loop['rng'], np.uint32) if 'rng' in loop else
                   np.asarray(jax.random.key_data(run_lib.seed_keys(c.seed)[1]))
                   for c, (_, loop) in zip(configs, restored)])
  # The values of each run's config, as arrays; those off in the group stay Python zeros.
  hyper = {f: jnp.asarray([c[g][f] for c in configs], jnp.float32)
           for g, f in _ARRAYS if base[g][f] > 0}

  mesh = Mesh(jax.devices(), ('data',))
  rows = NamedSharding(mesh, P(None, 'data'))  # [models, batch, ...]: the batch axis sharded
  single = NamedSharding(mesh, P('data'))

  def one(state, batch, key_data, hyper):
    optim = types.SimpleNamespace(**{**base.optim.to_dict(), **{
        k: v for k, v in hyper.items() if k in _OPTIM}})
    rates = {k: v for k, v in hyper.items() if k in _RATES}
    this = state.replace(tx=make_optimizer(optim, num_steps),
                         apply_fn=_with_rates(model, rates).apply if rates else state.apply_fn)
    new, metrics = train_step(this, batch, jax.random.wrap_key_data(key_data))
    return new.replace(tx=tx, apply_fn=state.apply_fn), metrics

  step_fn = jax.jit(jax.vmap(one), donate_argnums=0)

  def make(step):
    batches = [batching.train_batch(split, step, batch_size=base.data.batch_size,
                                    buckets=buckets, seed=c.seed, pack=base.data.pack)
               for c in configs]
    longest = max(b['inputs'].shape[1] for b in batches)
    return jax.device_put(_stack([batching.pad_to(b, longest) for b in batches]), rows)

  def put(batch):
    return jax.device_put(batch, single)

  def evaluate(k, name, state_k):
    return run_lib._evaluate(state_k.replace(apply_fn=models[k].apply), dataset.splits[name],
                             configs[k], buckets, put)

  cfg = base.train
  pending, active = [], set(range(len(runs)))
  try:
    with run_lib._stop_on_signals() as stop, tqdm(
        total=num_steps, initial=min(start, num_steps), desc=f'train {len(runs)} models',
        dynamic_ncols=True) as bar:
      window_start, window_steps = time.perf_counter(), 0
      for step, batch in zip(range(start + 1, num_steps + 1),
                             batching.prefetch(make, range(start, num_steps))):
        state, metrics = step_fn(state, batch, keys, hyper)
        pending.append((step, metrics))
        window_steps += 1
        bar.update(1)
        last, stopping = step == num_steps, stop.is_set()
        if step % cfg.log_every_steps and step % cfg.eval_every_steps and step % \
            cfg.checkpoint_every_steps and not (last or stopping):
          continue
        _drain(pending, runs, active)
        pending = []
        states = {k: _take(state, k) for k in active}
        if step % cfg.log_every_steps == 0 or last:
          now = time.perf_counter()
          for k in active:
            train_metrics = summarize(runs[k].window or {})
            train_metrics.update(skipped_updates=runs[k].skipped,
                                 steps_per_s=window_steps / (now - window_start))
            runs[k].log.write(step, 'train', train_metrics)
            runs[k].window = None
          window_start, window_steps = now, 0
        if step % cfg.eval_every_steps == 0 or last:
          for k in active:
            r = runs[k]
            r.results['eval'] = evaluate(k, 'eval', states[k])
            r.log.write(step, 'eval', r.results['eval'])
            value = r.results['eval'][cfg.best_metric]
            if r.best_value is None or value > r.best_value:
              r.best_value = value
              r.best.save(states[k], {cfg.best_metric: value})
          say(f'step {step}: eval {cfg.best_metric} ' + ' '.join(
              f'{runs[k].results["eval"][cfg.best_metric]:.4f}' if k in active else 'stopped'
              for k in range(len(runs))))
        if step % cfg.checkpoint_every_steps == 0 or last or stopping:
          for k in active:
            r = runs[k]
            r.log.sync()
            r.checkpoints.save(states[k], {
                'window': r.window or {}, 'skipped': r.skipped, 'best': r.best_value,
                'rng': keys[k].tolist(), 'data_position': step})
        if stopping:
          raise run_lib.Preempted(f'stopped by a signal at step {step}; every run\'s checkpoint '
                                  f'is saved; run again to resume')
        if not active:
          break
    for k in sorted(active):
      r, state_k = runs[k], _take(state, k)
      r.results['eval'] = r.results.get('eval') or evaluate(k, 'eval', state_k)
      r.results['test'] = evaluate(k, 'test', state_k)
      r.log.write(num_steps, 'test', r.results['test'])
      r.results.update(run_lib.test_of_best(r.best, state_k, num_steps, r.results['test'],
                                            lambda s, k=k: evaluate(k, 'test', s), r.log))
      r.results.update(compiled_train_shapes=None, buckets=buckets)
  finally:
    for r in runs:
      r.close()
  return [r.error if r.error is not None else r.results for r in runs]


def _drain(pending, runs, active):
  """Adds the pending steps' metrics to each run's window; a rejected update stops
  its run (or is counted, with skip_nonfinite)."""
  fetched = jax.device_get([m for _, m in pending])
  for (step, _), metrics in zip(pending, fetched):
    for k in sorted(active):
      m = {name: (float(s[k]), float(n[k])) for name, (s, n) in metrics.items()}
      bad = m.pop('nonfinite')[0] > 0, m.pop('invalid_batch')[0] > 0
      r = runs[k]
      if any(bad):
        if not r.config.train.skip_nonfinite:
          what = 'a non-finite loss, gradient or update' if bad[0] else 'an invalid batch'
          r.error = FloatingPointError(f'{what} at step {step}; the update was not applied and '
                                       f'this run stopped (its siblings went on)')
          active.discard(k)
        else:
          r.skipped += 1
        continue
      r.window = accumulate(r.window, m)
