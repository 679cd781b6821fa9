"""The train state, the optimiser, and the pure train and eval steps."""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from seqrnn import tasks
from seqrnn.batch import batch_is_valid


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the task's `(logits, batch) -> metrics` function."""
  task: Callable = flax.struct.field(pytree_node=False)


OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'cosine')


def make_optimizer(optim_config, num_steps):
  """Gradient clipping, then the optimiser with its learning-rate schedule.

  The optimiser is wrapped in `optax.inject_hyperparams`, so the learning rate
  lives in the optimiser state (an array: it can differ per model under vmap).
  """
  if optim_config.schedule == 'cosine':
    unit = optax.warmup_cosine_decay_schedule(
        0.0, 1.0, optim_config.warmup_steps, max(num_steps, optim_config.warmup_steps + 1))
  else:
    unit = optax.join_schedules(
        [optax.linear_schedule(0.0, 1.0, optim_config.warmup_steps), optax.constant_schedule(1.0)],
        [optim_config.warmup_steps])
  # The peak times a schedule from 0 to 1 (what optax computes, exactly, past the
  # warm-up): the peak may then be an array, one per model under vmap.
  peak = optim_config.learning_rate
  schedule = lambda count: peak * unit(count)
  if optim_config.name == 'adam':
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
  elif optim_config.name == 'adamw':
    opt = optax.inject_hyperparams(optax.adamw)(learning_rate=schedule,
                                                weight_decay=optim_config.weight_decay)
  else:
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule, momentum=0.9)
  # Both branches have the same state tree (an empty state, then the optimiser's),
  # so a run resumed with clipping switched on or off restores as it is.
  norm = optim_config.grad_clip_norm  # an array (one per model under vmap) always clips
  clip = (optax.identity() if isinstance(norm, (int, float)) and norm == 0
          else optax.clip_by_global_norm(norm))
  return optax.chain(clip, opt)


def with_hyperparams_of(opt_state, fresh_opt_state):
  """`opt_state` (e.g. restored from a checkpoint) with the injected hyperparameters
  of `fresh_opt_state` (built from the config now in force).

  `inject_hyperparams` keeps constant hyperparameters such as weight decay in the
  optimiser state and reads them from there: without this, a resumed run would go
  on with the old values whatever its config says. (Scheduled ones, such as the
  learning rate, are recomputed from the step count at every update anyway.)
  """
  is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)
  return jax.tree.map(
      lambda old, new: old._replace(hyperparams=new.hyperparams) if is_injected(old) else old,
      opt_state, fresh_opt_state, is_leaf=is_injected)


def model_args(batch):
  """The positional and keyword arguments a model takes from `batch`: inputs,
  lengths and, where the batch has them, each word's characters `chars` and
  packed rows' `segments`."""
  return ((batch['inputs'], batch['lengths']),
          {k: batch[k] for k in ('chars', 'segments') if k in batch})


def create_train_state(key, model, example_batch, tx, task):
  """Initialises parameters from `key` with shapes taken from `example_batch`."""

  # One compiled program: run op by op, the initialisers and the optimiser's state
  # were dozens of small compilations (2 s of a small run's start on a CPU).
  @jax.jit
  def init(key, args, kwargs):
    params = model.init({'params': key}, *args, **kwargs, train=False)['params']
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx, task=task)

  state = init(key, *model_args(example_batch))
  # A strong int32, as a restored checkpoint's: a weakly typed 0 lowers the train step to
  # another program, which a resume would then miss in the persistent compilation cache.
  return state.replace(step=jnp.zeros((), jnp.int32))


def train_step(state, batch, rng):
  """One optimiser step. Pure: jit it (donating `state`), vmap it, shard it.

  Dropout's key is `fold_in(rng, state.step)`, so a resumed run draws the
  same masks. An update is applied only if the batch is valid (see
  `seqrnn.batch.batch_is_valid`: research code that skips `validate_batch`
  cannot train on rows it would refuse) and the loss, the gradient and the new
  parameters and optimiser state are all finite; otherwise `state` is unchanged
  except for the step count, and `metrics['nonfinite']` (loss, gradient or
  update) or `metrics['invalid_batch']` reports it, so the caller can stop or
  count skips.

  Returns (new state, metrics as {'name': (sum, count)}).
  """
  key = jax.random.fold_in(rng, state.step)

  args, kwargs = model_args(batch)

  def loss_fn(params):
    logits, sown = state.apply_fn({'params': params}, *args, **kwargs, train=True,
                                  rngs={'dropout': key}, mutable=['intermediates'])
    metrics = state.task(logits, batch)
    metrics.update(_newton_iterations(sown))
    loss_sum, count = metrics.get('objective', metrics['loss'])
    return loss_sum / count, (metrics, batch_is_valid(batch, num_classes=tasks.num_classes(logits)))

  grads, (metrics, valid) = jax.grad(loss_fn, has_aux=True)(state.params)
  grad_norm = optax.tree.norm(grads)
  new_state = state.apply_gradients(grads=grads)
  learning_rate = _learning_rate(new_state.opt_state)
  finite = (jnp.isfinite(grad_norm) & jnp.isfinite(metrics['loss'][0])
            & _all_finite((new_state.params, new_state.opt_state)))
  ok = finite & valid
  new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state,
                           state.replace(step=new_state.step))
  metrics['grad_norm'] = (grad_norm, 1.0)
  if learning_rate is not None:  # the schedule's value at this step (each model's, under vmap)
    metrics['learning_rate'] = (learning_rate, 1.0)
  metrics['nonfinite'] = (1.0 - finite.astype(jnp.float32), 1.0)
  metrics['invalid_batch'] = (1.0 - valid.astype(jnp.float32), 1.0)
  return new_state, metrics


def _newton_iterations(sown):
  """{'newton_iterations/<layer>': (count, 1)} of each layer the parallel loop solved by
  Newton's method (`seqrnn.parallel`); the cap + 1 means it finished sequentially."""
  found = jax.tree_util.tree_flatten_with_path(sown.get('intermediates', {}))[0]
  return {'newton_iterations/' + '/'.join(str(getattr(k, 'key', k)) for k in path[:-2]):
          (value.astype(jnp.float32), 1.0) for path, value in found
          if str(getattr(path[-2], 'key', '')) == 'parallel_iterations'}


def _learning_rate(opt_state):
  """The learning rate an `optax.inject_hyperparams` optimiser (`make_optimizer`'s) used at
  the update that gave `opt_state`, or None for an optimiser that does not say."""
  for part in opt_state if isinstance(opt_state, tuple) else (opt_state,):
    hyperparams = getattr(part, 'hyperparams', None)
    if isinstance(hyperparams, dict) and 'learning_rate' in hyperparams:
      return hyperparams['learning_rate']
  return None


def _all_finite(tree):
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.stack(leaves).all()


def predict(state, batch):
  """The model's output on `batch` without dropout: logits, or a head's scores."""
  args, kwargs = model_args(batch)
  return state.apply_fn({'params': state.params}, *args, **kwargs, train=False)


def eval_step(state, batch):
  """Metrics of `state` on `batch` without dropout, as {'name': (sum, count)}."""
  return state.task(predict(state, batch), batch)
