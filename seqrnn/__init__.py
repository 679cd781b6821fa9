"""seqrnn: scanned GRU/LSTM stacks for sequence classification and labelling in JAX."""

from seqrnn.batch import validate_batch
from seqrnn.cells import CELLS, GRUCell, LSTMCell, LSTMState
from seqrnn import config
from seqrnn.config import default_config, validate_config
from seqrnn.layer import Recurrent
from seqrnn.models import Classifier, Encoder, Labeller, build_model
from seqrnn.run import Preempted, train_and_evaluate
from seqrnn.stack import RNNStack
from seqrnn.tasks import TASKS, classification, get_task, labelling
from seqrnn.train import TrainState, create_train_state, eval_step, make_optimizer, train_step

__version__ = '0.1.0'
