"""Tests for tf_mtdet.evaluation.callbacks with tiny tf_keras models."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf_mtdet.evaluation import callbacks
from tf_mtdet.evaluation import coco
from tf_mtdet.evaluation import segmentation
from tf_mtdet.evaluation import voc

# Three 64x64 images; image 3 has no objects.
GT = {
    1: [([4, 4, 20, 16], 1), ([30, 30, 25, 25], 2)],
    2: [([10, 40, 12, 12], 1)],
    3: [],
}
MAX_BOXES = 3
IMAGE_SIZE = 64
SCALE = 0.5  # The "model input" is the image resized by half.


@pytest.fixture
def annotation_file(write_coco_json):
  anns = [{'image_id': i, 'category_id': c, 'bbox': b}
          for i, objs in GT.items() for b, c in objs]
  return write_coco_json([(i, IMAGE_SIZE, IMAGE_SIZE) for i in GT], anns,
                         [(1, 'a'), (2, 'b')])


def detection_dataset(batch_size=2):
  """(features, labels): features carry the ground truth in the resized frame.

  Labels hold `source_id` and `image_info` only, as a detection parser does;
  the model outputs lack them, so the callback must take them from labels.
  """
  ids, images, boxes, classes, nums, infos = [], [], [], [], [], []
  for img_id, objs in GT.items():
    b = np.zeros([MAX_BOXES, 4], np.float32)
    c = np.zeros([MAX_BOXES], np.int32)
    for k, ((x, y, w, h), cls) in enumerate(objs):
      b[k] = np.array([y, x, y + h, x + w]) * SCALE
      c[k] = cls
    ids.append(img_id)
    images.append(np.full([8, 8, 3], img_id, np.float32))
    boxes.append(b)
    classes.append(c)
    nums.append(len(objs))
    scaled = IMAGE_SIZE * SCALE
    infos.append([[IMAGE_SIZE, IMAGE_SIZE], [scaled, scaled],
                  [SCALE, SCALE], [0, 0]])
  features = {'image': np.stack(images), 'gt_boxes': np.stack(boxes),
              'gt_classes': np.stack(classes),
              'gt_num': np.array(nums, np.int32)}
  labels = {'source_id': np.array(ids, np.int64),
            'image_info': np.array(infos, np.float32)}
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(
      batch_size)


def features_only(dataset):
  # Training uses the model's added loss only; labels are for evaluation.
  return dataset.map(lambda features, labels: features)


class OracleDetector(tf_keras.Model):
  """Returns its ground-truth features as detections; one trainable weight.

  The weight multiplies the boxes and is pulled to 1 by an added loss that is
  zero (with zero gradient) at its initial value, so boxes stay exact.
  """

  def __init__(self):
    super().__init__()
    self.box_scale = self.add_weight(name='box_scale', shape=(),
                                     initializer='ones', trainable=True)

  def call(self, features, training=False):
    self.add_loss(tf.square(self.box_scale - 1.0))
    return {
        'detection_boxes': features['gt_boxes'] * self.box_scale,
        'detection_classes': features['gt_classes'],
        'detection_scores': tf.ones(tf.shape(features['gt_classes'])),
        'num_detections': features['gt_num'],
    }


def test_fit_logs_coco_ap_in_history(annotation_file, capsys):
  model = OracleDetector()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  dataset = detection_dataset()
  callback = callbacks.EvaluationCallback(
      coco.COCOEvaluator(annotation_file), dataset)
  history = model.fit(features_only(dataset), epochs=2, verbose=0,
                      callbacks=[callback])
  assert history.history['val_AP'] == pytest.approx([1.0, 1.0])
  assert history.history['val_AP50'] == pytest.approx([1.0, 1.0])
  assert 'loss' in history.history
  out = capsys.readouterr().out
  assert 'Epoch 1 evaluation: val_AP: 1.0000' in out
  assert 'Epoch 2 evaluation' in out


def test_summaries_are_written_at_steps_tensorboard_does_not_log(
    annotation_file, tmp_path):
  """Keras' TensorBoard callback (update_freq 5) keeps summaries off except
  at multiples of 5 while fit runs; the evaluations at steps 2 and 4 must
  still reach TensorBoard."""
  model = OracleDetector()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  dataset = detection_dataset()
  callback = callbacks.EvaluationCallback(
      coco.COCOEvaluator(annotation_file), dataset, verbose=0,
      summary_dir=str(tmp_path / 'evaluation'))
  model.fit(features_only(dataset), epochs=2, verbose=0, callbacks=[
      tf_keras.callbacks.TensorBoard(str(tmp_path), update_freq=5),
      callback])
  steps = {}
  for path in tf.io.gfile.glob(str(tmp_path / 'evaluation' / 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  assert steps['AP'] == [2, 4] and steps['AP50'] == [2, 4]


def test_every_n_epochs_and_custom_predict_fn(annotation_file):
  dataset = detection_dataset(batch_size=3)
  calls = []

  def predict_fn(model, features):
    calls.append(1)
    outputs = model(features, training=False)
    # Drop the second box of each image: image 1 loses its class-2 object.
    return dict(outputs, num_detections=tf.minimum(outputs['num_detections'],
                                                    1))

  model = OracleDetector()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  callback = callbacks.EvaluationCallback(
      voc.VOCMeanAPEvaluator(annotation_file), dataset,
      predict_fn=predict_fn, every_n_epochs=2, prefix='eval/', verbose=0)
  history = model.fit(features_only(dataset), epochs=3, verbose=0,
                      callbacks=[callback])
  # Evaluated after epoch 2 only (epochs 1 and 3 are skipped); one batch.
  assert len(calls) == 1
  assert history.history['eval/mAP@0.5'] == pytest.approx([0.5])
  assert history.history['eval/AP@0.5/a'] == pytest.approx([1.0])
  assert history.history['eval/AP@0.5/b'] == pytest.approx([0.0])
  assert callback.last_metrics['eval/mAP@0.5'] == pytest.approx(0.5)


def test_evaluate_dataset_semantic_miou():
  # The model predicts class 1 everywhere; labels are half 0, half 1.
  labels = np.zeros([2, 4, 4], np.int32)
  labels[:, :, 2:] = 1
  labels[0, 0, 0] = 255  # Ignored.
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.zeros([2, 4, 4, 1], np.float32), {'semantic': labels})).batch(2)

  def predict_fn(images):
    logits = tf.concat([tf.zeros_like(images), tf.ones_like(images)], -1)
    return {'semantic': logits}

  evaluator = segmentation.SemanticIoUEvaluator(2)
  evaluator.update_state({'semantic': labels}, {'semantic': labels})  # Stale.
  metrics = callbacks.evaluate_dataset(evaluator, predict_fn, dataset)
  # 31 valid pixels: 15 of class 0 predicted 1, 16 of class 1 correct.
  # IoU0 = 0, IoU1 = 16 / 31; the stale update was reset away.
  assert metrics['mIoU'] == pytest.approx(8 / 31)
  assert metrics['pixel_accuracy'] == pytest.approx(16 / 31)


def test_non_dict_predictions_raise():
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.zeros([1, 2, 2]), {'semantic': np.zeros([1, 2, 2], np.int32)}))
  with pytest.raises(TypeError, match='dict'):
    callbacks.evaluate_dataset(segmentation.SemanticIoUEvaluator(2),
                               lambda x: x, dataset.batch(1))


def test_evaluate_dataset_progress_counts_images(annotation_file):
  evaluator = coco.COCOEvaluator(annotation_file)
  assert evaluator.num_groundtruth_images == 3
  model = OracleDetector()
  log = io.StringIO()  # Not a terminal: throttled lines, then a final one.
  metrics = callbacks.evaluate_dataset(
      evaluator, lambda features: model(features), detection_dataset(2),
      progress=log, total=evaluator.num_groundtruth_images)
  assert metrics['AP'] == pytest.approx(1.0)
  assert re.fullmatch(r'evaluate: 3/3 images \(100%\), [0-9.]+ images/s\n',
                      log.getvalue()), log.getvalue()
