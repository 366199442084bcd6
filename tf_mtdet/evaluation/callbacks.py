"""Running an evaluator over a dataset, and a Keras callback doing it per epoch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, TextIO

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from tf_mtdet.evaluation import utils
from tf_mtdet.utils import progress as progress_lib

# Fields the evaluators need from the labels when the model does not output
# them (a model maps pixels to detections; image identity lives in labels).
_PASSTHROUGH_KEYS = ('source_id', 'image_info')

PredictFn = Callable[[Any], Mapping[str, Any]]


def _split_element(element: Any) -> tuple[Any, Mapping[str, Any]]:
  """Returns (features, labels) of a dataset element."""
  if isinstance(element, (tuple, list)) and len(element) >= 2:
    return element[0], element[1]
  raise ValueError('The evaluation dataset must yield (features, labels) '
                   f'tuples; got {type(element).__name__}.')


def _num_images(features: Any, labels: Any) -> int:
  """Images in a batch: the labels' `source_id` rows, else the features'."""
  if isinstance(labels, Mapping) and 'source_id' in labels:
    return int(np.shape(labels['source_id'])[0])
  first = tf.nest.flatten(features)[0]
  return int(np.shape(first)[0]) if np.ndim(first) else 1


def evaluate_dataset(evaluator: Any,
                     predict_fn: PredictFn,
                     dataset: tf.data.Dataset,
                     progress: Optional[TextIO] = None,
                     total: Optional[int] = None) -> dict[str, float]:
  """Runs `predict_fn` over `dataset` and returns the evaluator's metrics.

  The evaluator is reset first. For each `(features, labels)` element the
  predictions `predict_fn(features)` are completed with `source_id` and
  `image_info` from `labels` when absent, converted to numpy, and passed to
  `evaluator.update_state(labels, predictions)`.

  Args:
    evaluator: an object with `reset_states()`, `update_state(groundtruths,
      predictions)` and `result() -> dict[str, float]` (any evaluator of this
      package).
    predict_fn: maps a batch of features to a dict of batched predictions.
    dataset: yields `(features, labels)`; `labels` is a dict that holds at
      least what the evaluator needs (`source_id`, `image_info`, or e.g.
      `semantic`).
    progress: Stream for a throttled "images done, images/s" line (e.g.
      `sys.stderr`); None prints nothing.
    total: Images expected, shown in the progress line when given.

  Returns:
    A flat dict of metric name -> float.
  """
  evaluator.reset_states()
  line = progress_lib.ProgressLine('evaluate', progress, total=total)
  for element in dataset:
    features, labels = _split_element(element)
    outputs = predict_fn(features)
    if not isinstance(outputs, Mapping):
      raise TypeError('predict_fn must return a dict of predictions; got '
                      f'{type(outputs).__name__}.')
    predictions = dict(outputs)
    if isinstance(labels, Mapping):
      for key in _PASSTHROUGH_KEYS:
        if key not in predictions and key in labels:
          predictions[key] = labels[key]
      groundtruths = utils.dict_to_numpy(labels)
    else:
      groundtruths = None
    evaluator.update_state(groundtruths, utils.dict_to_numpy(predictions))
    line.update(_num_images(features, labels))
  line.finish()
  return {name: float(value) for name, value in evaluator.result().items()}


class EvaluationCallback(tf_keras.callbacks.Callback):
  """Evaluates the model with an evaluator at the end of every n-th epoch.

  Metrics go into the epoch `logs` as `prefix + name` (e.g. `val_AP`), so
  callbacks after this one in the list (History, TensorBoard, checkpointing
  on a metric) see them; put it before `TensorBoard`/`ModelCheckpoint`. One
  summary line is printed per evaluation.
  """

  def __init__(self,
               evaluator: Any,
               dataset: tf.data.Dataset,
               predict_fn: Callable[[tf_keras.Model, Any],
                                    Mapping[str, Any]] | None = None,
               every_n_epochs: int = 1,
               prefix: str = 'val_',
               verbose: int = 1,
               headline: Callable[[Mapping[str, float]],
                                  Mapping[str, float]] | None = None,
               summary_dir: str | None = None):
    """Constructs the callback.

    Args:
      evaluator: evaluator with `reset_states`/`update_state`/`result`.
      dataset: `tf.data.Dataset` of `(features, labels)`.
      predict_fn: `predict_fn(model, features) -> dict`; defaults to
        `model(features, training=False)` inside a `tf.function`.
      every_n_epochs: evaluate after epochs n, 2n, ... (1-based).
      prefix: prepended to metric names in `logs`.
      verbose: 0 silences the per-evaluation line.
      headline: Picks the metrics that go into the epoch `logs` (and so the
        Keras epoch line and History); None puts all of them there.
      summary_dir: Every metric is written here as a TensorBoard scalar at
        the optimizer step (so a short epoch line loses nothing).
    """
    super().__init__()
    if every_n_epochs < 1:
      raise ValueError('every_n_epochs must be >= 1.')
    self._evaluator = evaluator
    self._dataset = dataset
    self._predict_fn = predict_fn
    self._every_n_epochs = int(every_n_epochs)
    self._prefix = prefix
    self._verbose = verbose
    self._headline = headline
    self._summary_dir = summary_dir
    self._writer = None
    self._default_fn = None
    self._default_fn_model = None
    self.last_metrics: dict[str, float] = {}

  def _model_predict_fn(self) -> PredictFn:
    if self._predict_fn is not None:
      return lambda features: self._predict_fn(self.model, features)
    if self._default_fn is None or self._default_fn_model is not self.model:
      model = self.model
      # Traced once per input signature instead of eager op-by-op calls.
      self._default_fn = tf.function(
          lambda features: model(features, training=False))
      self._default_fn_model = model
    return self._default_fn

  def on_epoch_end(self, epoch: int,
                   logs: dict[str, Any] | None = None) -> None:
    if (epoch + 1) % self._every_n_epochs:
      return
    metrics = evaluate_dataset(
        self._evaluator, self._model_predict_fn(), self._dataset)
    self.last_metrics = {self._prefix + k: v for k, v in metrics.items()}
    shown = (self._headline(metrics) if self._headline is not None else
             metrics)
    shown = {self._prefix + k: v for k, v in shown.items()}
    if logs is not None:
      logs.update(shown)
    if self._summary_dir:
      self._write_summaries(metrics)
    # Per-class entries (`.../<name>`) stay out of the printed line.
    summary = ' - '.join(f'{name}: {value:.4f}'
                         for name, value in shown.items() if '/' not in name)
    logging.info('Epoch %d evaluation: %s', epoch + 1, summary)
    if self._verbose:
      print(f'Epoch {epoch + 1} evaluation: {summary}', flush=True)

  def _write_summaries(self, metrics: Mapping[str, float]) -> None:
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self._summary_dir)
    step = (int(self.model.optimizer.iterations.numpy())
            if getattr(self.model, 'optimizer', None) is not None else 0)
    # Keras' TensorBoard callback keeps `record_if(step % update_freq == 0)`
    # on through training: without this, an evaluation at any other step
    # would write nothing.
    with self._writer.as_default(), tf.summary.record_if(True):
      for name, value in metrics.items():
        tf.summary.scalar(name, value, step=step)
    self._writer.flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None
