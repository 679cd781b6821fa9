"""What stacking K runs along a leading model axis adds to the training loop.

Runs whose configs differ only in the VECTORISED fields have parameters and
optimiser states of the same shapes. Stacked along a leading axis of K, they
train in one `jax.vmap` of `train_step`, one compilation for all K, with each
run's seed (its initial parameters, dropout and data order), learning rate,
weight decay, clipping norm and dropout, variational dropout and zoneout rates
as arrays (weight decay lives in the optimiser state already). Everything else,
each run's workdir, logs, checkpoints, evaluation, signals and many hosts, is
`seqrnn.run.train_runs`'s, the loop a single run goes through too. A single run's
step takes the same values as arguments (`hyper_step`, without the vmap).
"""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np

from seqrnn import config as config_lib
from seqrnn.data import batching
from seqrnn.train import make_optimizer, train_step

# The per-model values (`Field.vectorised` in the schema). The seed gives each run
# its initial state and keys, weight decay lives in the optimiser state; the
# others are passed to the vectorised step as arrays: the optimiser's values
# (learning rate, clipping norm) and the stack's regularisation rates.
VECTORISED = config_lib.fields_with('vectorised')
_ARRAYS = tuple(tuple(f.split('.')) for f in VECTORISED if f not in ('seed', 'optim.weight_decay'))
_OPTIM = tuple(f for g, f in _ARRAYS if g == 'optim')
_RATES = tuple(f for g, f in _ARRAYS if g == 'model')


def group_key(config):
  """Configs with equal keys train together: all fields but VECTORISED equal, and
  clipping and each regulariser on in all or in none (off, it is not in the program)."""
  flat = config_lib.to_flat_dict(config)
  key = {k: v for k, v in flat.items() if k not in VECTORISED}
  key.update({f'{g}.{f} on': flat[f'{g}.{f}'] > 0 for g, f in _ARRAYS})
  return json.dumps(key, sort_keys=True)


# Jitted, so that they also take arrays that span several processes.
stack = jax.jit(lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees))
take = jax.jit(lambda tree, k: jax.tree.map(lambda x: x[k], tree))


def stacked_batch(batches):
  """The runs' batches as one [K, batch, time, ...], padded to the longest (padding
  changes no result)."""
  longest = max(b['inputs'].shape[1] for b in batches)
  return jax.tree.map(lambda *xs: np.stack(xs), *[batching.pad_to(b, longest) for b in batches])


def hyper_step(configs, model):
  """(step, hyper): `step(state, batch, key_data, hyper)` is `train_step` with the values
  `hyper` of the runs' configs as arguments (clipping and rates off stay Python zeros) and
  dropout key data [2]; over K > 1 configs it is vmapped over the model axis ([K] values,
  key data [K, 2]).

  One run goes through it too, with scalars: its program then holds none of these values, so
  runs that differ only in them (a search's trials, a sweep's runs one by one, a rerun with
  another learning rate) load the first one's program from the persistent compilation cache
  instead of compiling their own.
  """
  step, hyper = _step_with(configs, model)
  if len(configs) == 1:
    return jax.jit(step, donate_argnums=0), {f: v[0] for f, v in hyper.items()}
  return jax.jit(jax.vmap(step), donate_argnums=0), hyper


def _step_with(configs, model):
  """(train_step_with, hyper [K]) of `hyper_step`, neither jitted nor vmapped."""
  base = configs[0]
  num_steps = base.train.num_steps
  hyper = {f: np.asarray([c[g][f] for c in configs], np.float32)
           for g, f in _ARRAYS if base[g][f] > 0}

  def train_step_with(state, batch, key_data, hyper):
    optim = types.SimpleNamespace(**{**base.optim.to_dict(), **{
        k: v for k, v in hyper.items() if k in _OPTIM}})
    rates = {k: v for k, v in hyper.items() if k in _RATES}
    apply_fn = state.apply_fn
    if rates:
      stack_module = model.encoder.stack.clone(**rates)
      apply_fn = model.clone(encoder=model.encoder.clone(stack=stack_module)).apply
    this = state.replace(tx=make_optimizer(optim, num_steps), apply_fn=apply_fn)
    new, metrics = train_step(this, batch, jax.random.wrap_key_data(key_data))
    return new.replace(tx=state.tx, apply_fn=state.apply_fn), metrics

  return train_step_with, hyper


def vectorised_step(configs, model):
  """Deprecated: `hyper_step`, vmapped over the model axis also for one config."""
  import warnings
  warnings.warn('seqrnn.group.vectorised_step is deprecated: use seqrnn.group.hyper_step, the '
                'step of one run or many', DeprecationWarning, stacklevel=2)
  step, hyper = _step_with(configs, model)
  return jax.jit(jax.vmap(step), donate_argnums=0), hyper


def train_group(configs, workdirs, say=None):
  """Deprecated: `seqrnn.run.train_runs(configs, workdirs)`, which this calls."""
  import warnings

  from seqrnn.run import train_runs
  del say  # the loop's own lines are printed on process 0
  warnings.warn('seqrnn.group.train_group is deprecated: use seqrnn.run.train_runs, the '
                'loop of one run or many', DeprecationWarning, stacklevel=2)
  return train_runs(configs, workdirs)
