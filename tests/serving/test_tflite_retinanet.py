"""TFLite export of RetinaNet: the LiteRT interpreter finds the SavedModel's
detections (Model Garden's multilevel decode and NMS, converted)."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.data.builder import shapes
from tf_mtdet.serving import export
from tf_mtdet.serving import predict
from tf_mtdet.serving import tflite

CONFIG = 'retinanet/retinanet_tiny_shapes'
INPUT_SIZE = (128, 160)
LABEL_MAP = {1: 'circle', 2: 'square', 3: 'triangle'}
TOP = 10


def _spread_class_scores(model: tf_keras.Model, seed: int) -> None:
  """Random weights give every anchor the focal prior's score (~0.01, under
  the generator's threshold, all tied): widen the classifier's kernel and
  bias so the scores spread over (0, 1) and the top detections are distinct,
  as a trained model's are."""
  rng = np.random.default_rng(seed)
  # Model Garden names the class predictor 'scores' (the tower 'classnet').
  variables = [v for v in model.head.trainable_variables
               if '/scores/' in v.name]
  assert variables, [v.name for v in model.head.trainable_variables]
  for variable in variables:
    scale = 2.0 if 'kernel' in variable.name else 1.5
    variable.assign(rng.normal(0.0, scale, variable.shape).astype(np.float32)
                    - (0.0 if 'kernel' in variable.name else 3.0))


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
  work = tmp_path_factory.mktemp('tflite_retinanet')
  label_map = work / 'label_map.json'
  label_map.write_text(json.dumps({
      'categories': [{'id': k, 'name': v} for k, v in LABEL_MAP.items()],
      'num_classes': 4}))
  config = experiment.load_config(CONFIG, [
      f'train_data.label_map={label_map}',
      f'eval_data.parser.output_size={list(INPUT_SIZE)}'])
  family = families.get(config)
  tf_keras.utils.set_random_seed(1)
  model = family.build_model()
  family.build_weights(model)
  _spread_class_scores(model, seed=1)
  checkpoint = str(work / 'ckpt' / 'ckpt')
  tf.train.Checkpoint(model=model).write(checkpoint)
  lite = tflite.export_tflite(config, checkpoint, str(work / 'lite'),
                              model=model)
  module = export.ServingModule(model, family,
                                family.build_parser(config.eval_data),
                                LABEL_MAP)
  saved = types.SimpleNamespace(signatures=module.get_inference_signatures(
      {'image_bytes': 'image_bytes'}))
  shapes.make_shapes(str(work / 'shapes'), 2, seed=2)
  shapes.make_shapes(str(work / 'wide'), 1, seed=3, image_size=(120, 300))
  images = predict.list_images(str(work / 'shapes' / 'images')) + (
      predict.list_images(str(work / 'wide' / 'images')))
  return {'lite': lite, 'saved': saved, 'images': images}


def test_retinanet_tflite_finds_the_saved_models_detections(exports):
  lite = predict.load_model(exports['lite'])
  saved = predict.load_model(exports['saved'])
  for image in exports['images']:
    reference = predict.predict_image(saved, image, score_threshold=0.0)
    found = predict.predict_image(lite, image, score_threshold=0.0)
    assert len(reference['scores']) >= TOP, image
    # Distinct top scores, else the match below would be by luck of ties.
    top = np.sort(reference['scores'])[::-1][:TOP]
    assert np.all(np.diff(top) < 0), top
    assert tflite.unmatched_detections(reference, found, top=TOP) == [], image
    assert found['class_names'][0] == LABEL_MAP[int(found['classes'][0])]
