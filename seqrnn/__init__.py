"""seqrnn: scanned GRU/LSTM stacks for sequence classification and labelling in JAX."""

from seqrnn.batch import validate_batch
from seqrnn.cells import CELLS, GRUCell, LSTMCell, LSTMState
from seqrnn.layer import Recurrent
from seqrnn.models import Classifier, Encoder, Labeller, build_model
from seqrnn.stack import RNNStack
from seqrnn.tasks import TASKS, classification, get_task, labelling
from seqrnn.train import TrainState, create_train_state, eval_step, make_optimizer, train_step

__version__ = '0.1.0'

# The training driver and the config schema pull in Orbax, TensorBoard, tqdm and
# ml_collections; they load on first use, so the model and steps stand alone.
_LAZY = {'train_and_evaluate': 'seqrnn.run', 'Preempted': 'seqrnn.run',
         'default_config': 'seqrnn.config', 'validate_config': 'seqrnn.config',
         'config': 'seqrnn.config'}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    module = importlib.import_module(_LAZY[name])
    return module if name == 'config' else getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
