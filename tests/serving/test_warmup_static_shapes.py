"""TF Serving warm-up requests (parsed as the server parses them, each one
run through the loaded SavedModel) and fixed-shape exports."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tests.serving import conftest
from tf_mtdet import cli
from tf_mtdet import families
from tf_mtdet.serving import adapters
from tf_mtdet.serving import export
from tf_mtdet.serving import exporter
from tf_mtdet.serving import predict
from tf_mtdet.serving import warmup

STATIC_BATCH = 2
STATIC_SIZE = (64, 96)


def read_warmup(version_dir: str):
  path = os.path.join(version_dir, 'assets.extra',
                      'tf_serving_warmup_requests')
  logs = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    logs.append(log)
  return logs


def run_warmup(loaded, logs):
  """Runs every request as the model server's warm-up does; returns
  {signature: [batch sizes]}."""
  assert 0 < len(logs) < warmup.MAX_RECORDS
  batches = {}
  for log in logs:
    assert log.WhichOneof('log_type') == 'predict_log'
    request = log.predict_log.request
    name = request.model_spec.signature_name
    assert name in loaded.signatures
    specs = loaded.signatures[name].structured_input_signature[1]
    assert sorted(request.inputs) == sorted(specs)
    response = adapters.predict_grpc(loaded, request)
    batches.setdefault(name, []).append(
        int(tf.make_ndarray(response.outputs['num_detections']).shape[0]))
  return batches


def test_warmup_requests_run_through_the_saved_model(exported, loaded):
  logs = read_warmup(exported.version_dir)
  batches = run_warmup(loaded, logs)
  assert batches == {name: list(warmup.DYNAMIC_BATCH_SIZES)
                     for name in export.SIGNATURES.values()}
  # The generated image is the model's padded input size.
  image = tf.make_ndarray(logs[0].predict_log.request.inputs['inputs'])
  assert image.shape == (1, conftest.INPUT_SIZE, conftest.INPUT_SIZE, 3)
  assert image.std() > 20  # Not a blank image.


def test_prediction_log_encoding_matches_the_proto():
  image = warmup.generated_image(5, 7)
  encoded = warmup.prediction_log('tf_example', warmup.signature_inputs(
      'tf_example', image, 3), model_name='mtdet')
  log = prediction_log_pb2.PredictionLog.FromString(encoded)
  request = log.predict_log.request
  assert (request.model_spec.name, request.model_spec.signature_name) == (
      'mtdet', 'tf_example')
  examples = tf.make_ndarray(request.inputs['inputs'])
  assert examples.shape == (3,)
  features = tf.train.Example.FromString(examples[0]).features.feature
  np.testing.assert_array_equal(
      tf.io.decode_png(features['image/encoded'].bytes_list.value[0]), image)


@pytest.fixture(scope='module')
def static_exported(tmp_path_factory):
  """The stub model exported with a static batch and image size."""
  config = exporter.fixed_input_config(conftest.tiny_config(), STATIC_SIZE)
  family = families.get(config)
  module = conftest.stub_serving_module(
      family.build_parser(config.eval_data), conftest.STUB_LABEL_MAP,
      batch_size=STATIC_BATCH, input_size=STATIC_SIZE)
  base = str(tmp_path_factory.mktemp('static') / 'stub')
  return export.export_saved_model(module, base)


def test_static_shapes_signatures_and_warmup(static_exported):
  loaded = adapters.load(static_exported)
  shapes = {name: fn.structured_input_signature[1]['inputs'].shape.as_list()
            for name, fn in loaded.signatures.items()}
  assert shapes == {'serving_default': [STATIC_BATCH, *STATIC_SIZE, 3],
                    'image_bytes': [STATIC_BATCH],
                    'tf_example': [STATIC_BATCH]}
  assert run_warmup(loaded, read_warmup(static_exported)) == {
      name: [STATIC_BATCH] for name in export.SIGNATURES.values()}
  images = np.stack([conftest.sample_image(*STATIC_SIZE, seed=s)
                     for s in range(STATIC_BATCH)])
  outputs = loaded.signatures['serving_default'](inputs=tf.constant(images))
  # The parser resizes to the input size: the model sees it unscaled.
  np.testing.assert_allclose(outputs['image_info'][:, 2].numpy(), 1.0)
  assert outputs['detection_boxes'].shape[0] == STATIC_BATCH
  # One image is not a batch of two.
  answer = adapters.predict_rest(loaded, {'instances': images[:1].tolist()})
  assert 'must have shape (2, 64, 96, 3)' in answer['error']


def test_predict_fills_a_static_batch(static_exported, image_file):
  detections = predict.predict_image(static_exported, image_file)
  assert detections['class_names'] == ['circle', 'square']


@pytest.mark.parametrize('flags, message', [
    (['--batch-size', '0'], '--batch-size 0: a batch holds at least one'),
    (['--input-size', '0', '64'], '--input-size 0 64: expected a positive'),
])
def test_export_refuses_static_shapes_no_model_takes(tmp_path, capsys, flags,
                                                     message):
  out = tmp_path / 'export'
  assert cli.main(['export', '--config', 'retinanet/retinanet_tiny_shapes',
                   '--checkpoint', str(tmp_path / 'none'), '--out', str(out),
                   *flags]) == 1
  assert f'tf-mtdet export: error: {message}' in capsys.readouterr().err
  assert not out.exists()
