"""seqrnn: recurrent stacks in JAX/Flax for sequence classification and labelling.

The pieces, from one step to a whole run:
  cells        GRUCell, LSTMCell (Flax cells with a fast path), LayerNorm*Cell, CELLS,
               register_cell; the protocol of the fast paths: ProjectedCell, FusedCell,
               has_fused_loop; hidden_state, cell_state, with_states: h and c of any carry
  masks        time_mask, packed rows' starts, per-step draws
  checks       what the modules check of their inputs; checked(fn): the same under jit
  fused        the fused loop (a FusedCell's hand-written backward pass)
  layer        Recurrent: one cell over time, masked by lengths; loops 'fused' and 'scan';
               recurrent dropout and Zoneout
  stack        RNNStack: layers, dropout (per step or variational), bidirectional, residual,
               carries in and out (flax.linen.RNN's layout and return order), step
  words        WordEmbedding (word-type and word dropout), CharEncoder (cnn or lstm)
  conv         ConvFrontEnd: convolutions over time, then windows max-pooled, before the stack
  augment      random_crop: training windows of each sequence (Classifier's crop)
  models       Classifier (pooling 'last'/'mean'/'max'/'attention'), Labeller, build_model
  crf          a linear-chain CRF head (model.head='crf'): log-partition, Viterbi
  ctc          CTC: the loss (optax's), greedy and beam decoding, edit distance
  tasks        classification, labelling, ctc: (logits, batch) -> metrics
  train        train_step, eval_step, create_train_state, make_optimizer
  torch        from_torch, to_torch: PyTorch GRU/LSTM weights; torch_states,
               from_torch_states: h_n/c_n in torch's layout
  hosts        initialize (jax.distributed), is_main: runs over many processes
  prepare      data, padded lengths, models and fresh states a run starts from
  run_state    one run's host-side state and files (restore, logs, best, checkpoints)
  group        what stacking runs along a model axis adds (vectorised sweeps)
  run          train_and_evaluate(config, workdir), train_runs(configs, workdirs): the loop
"""

from seqrnn import augment, crf, ctc, hosts
from seqrnn.checks import checked
from seqrnn.conv import ConvFrontEnd
from seqrnn.batch import validate_batch
from seqrnn.cells import (CELLS, FusedCell, GRUCell, LayerNormGRUCell, LayerNormLSTMCell,
                          LSTMCell, LSTMState, ProjectedCell, cell_state, has_fused_loop,
                          hidden_state, make_cell, register_cell, with_states)
from seqrnn.layer import Recurrent, Zoneout, reverse_padded
from seqrnn.masks import time_mask
from seqrnn.models import AttentionPooling, Classifier, Encoder, Labeller, build_model, pool
from seqrnn.stack import RNNStack
from seqrnn.tasks import TASKS, classification, get_task, labelling
from seqrnn.torch_weights import from_torch, from_torch_states, to_torch, torch_states
from seqrnn.train import TrainState, create_train_state, eval_step, make_optimizer, train_step
from seqrnn.words import CharEncoder, WordEmbedding

__version__ = '0.2.0'

# The training driver and the config schema pull in Orbax, TensorBoard, tqdm and
# ml_collections; they load on first use, so the model and steps stand alone.
_LAZY = {'train_and_evaluate': 'seqrnn.run', 'Preempted': 'seqrnn.run', 'Pruned': 'seqrnn.run',
         'default_config': 'seqrnn.config', 'validate_config': 'seqrnn.config',
         'config': 'seqrnn.config'}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    module = importlib.import_module(_LAZY[name])
    return module if name == 'config' else getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
