"""The train state, the optimiser, and the pure train and eval steps."""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the task's `(logits, batch) -> metrics` function."""
  task: Callable = flax.struct.field(pytree_node=False)


def make_optimizer(optim_config, num_steps):
  """Gradient clipping, then the optimiser with its learning-rate schedule.

  The optimiser is wrapped in `optax.inject_hyperparams`, so the learning rate
  lives in the optimiser state (an array: it can differ per model under vmap).
  """
  peak = optim_config.learning_rate
  if optim_config.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, peak, optim_config.warmup_steps, max(num_steps, optim_config.warmup_steps + 1))
  else:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, peak, optim_config.warmup_steps), optax.constant_schedule(peak)],
        [optim_config.warmup_steps])
  if optim_config.name == 'adam':
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
  elif optim_config.name == 'adamw':
    opt = optax.inject_hyperparams(optax.adamw)(learning_rate=schedule,
                                                weight_decay=optim_config.weight_decay)
  else:
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule, momentum=0.9)
  if optim_config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), opt)
  return opt


def create_train_state(key, model, example_batch, tx, task):
  """Initialises parameters from `key` with shapes taken from `example_batch`."""
  params = model.init({'params': key}, example_batch['inputs'], example_batch['lengths'],
                      train=False)['params']
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx, task=task)


def train_step(state, batch, rng):
  """One optimiser step. Pure: jit it (donating `state`), vmap it, shard it.

  Dropout's key is `fold_in(rng, state.step)`, so a resumed run draws the
  same masks. A non-finite loss or gradient leaves `state` unchanged except
  for the step count; `metrics['nonfinite']` reports it so the caller can stop
  or count skips.

  Returns (new state, metrics as {'name': (sum, count)}).
  """
  key = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits = state.apply_fn({'params': params}, batch['inputs'], batch['lengths'],
                            train=True, rngs={'dropout': key})
    metrics = state.task(logits, batch)
    loss_sum, count = metrics['loss']
    return loss_sum / count, metrics

  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(grad_norm) & jnp.isfinite(metrics['loss'][0])
  new_state = state.apply_gradients(grads=grads)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state,
                           state.replace(step=new_state.step))
  metrics['grad_norm'] = (grad_norm, 1.0)
  metrics['nonfinite'] = (1.0 - finite.astype(jnp.float32), 1.0)
  return new_state, metrics


def eval_step(state, batch):
  """Metrics of `state` on `batch` without dropout, as {'name': (sum, count)}."""
  logits = state.apply_fn({'params': state.params}, batch['inputs'], batch['lengths'],
                          train=False)
  return state.task(logits, batch)
