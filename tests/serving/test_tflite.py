"""TFLite export of a single-shot model: the LiteRT interpreter finds the
SavedModel's detections on quickstart images; predict takes the .tflite;
bad requests fail in one line with no folder left."""

import json
import os
import types

import pytest
import tensorflow as tf
import tf_keras

from tf_mtdet import cli
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.data.builder import shapes
from tf_mtdet.serving import export
from tf_mtdet.serving import predict
from tf_mtdet.serving import tflite

CONFIG = 'ivanet/ivanet_tiny_shapes'
# Smaller than the config's 256 x 320: the conversion dominates the test.
INPUT_SIZE = (128, 160)
LABEL_MAP = {1: 'circle', 2: 'square', 3: 'triangle'}
TOP = 10  # SavedModel detections each checked for a TFLite match.


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
  """The tiny IvaNet (random weights) as a SavedModel and as TFLite, and
  quickstart images (generated shapes, one at another aspect ratio)."""
  work = tmp_path_factory.mktemp('tflite')
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
  checkpoint = str(work / 'ckpt' / 'ckpt')
  tf.train.Checkpoint(model=model).write(checkpoint)
  lite = tflite.export_tflite(config, checkpoint, str(work / 'lite'),
                              model=model)
  module = export.ServingModule(model, family,
                                family.build_parser(config.eval_data),
                                LABEL_MAP)
  # The SavedModel's image_bytes signature, traced but not written (the
  # export tests check the writing).
  saved = types.SimpleNamespace(signatures=module.get_inference_signatures(
      {'image_bytes': 'image_bytes'}))
  shapes.make_shapes(str(work / 'shapes'), 2, seed=2)
  shapes.make_shapes(str(work / 'wide'), 1, seed=3, image_size=(120, 300))
  images = predict.list_images(str(work / 'shapes' / 'images')) + (
      predict.list_images(str(work / 'wide' / 'images')))
  return {'lite': lite, 'saved': saved, 'images': images, 'config': config,
          'checkpoint': checkpoint, 'work': work}


def test_tflite_finds_the_saved_models_detections(exports):
  lite = predict.load_model(exports['lite'])
  saved = predict.load_model(exports['saved'])
  for image in exports['images']:
    reference = predict.predict_image(saved, image, score_threshold=0.0)
    found = predict.predict_image(lite, image, score_threshold=0.0)
    assert len(reference['scores']) >= TOP, image
    assert tflite.unmatched_detections(reference, found, top=TOP) == [], image
    assert found['class_names'][0] == LABEL_MAP[int(found['classes'][0])]
    # The class map, back at the original size.
    assert found['semantic_map'].shape == reference['semantic_map'].shape
    agree = (found['semantic_map'] == reference['semantic_map']).mean()
    assert agree > 0.97, (image, agree)


def test_predict_cli_takes_the_tflite_model(exports, tmp_path, capsys):
  out, results = tmp_path / 'pictures', tmp_path / 'results.json'
  assert cli.main(['predict', '--model', exports['lite'], '--image',
                   os.path.dirname(exports['images'][0]), '--out', str(out),
                   '--json', str(results)]) == 0
  assert sorted(os.listdir(out)) == ['shapes_000000.png', 'shapes_000001.png']
  entries = json.loads(results.read_text())
  assert {e['image_id'] for e in entries} == {1, 2}
  assert 'COCO results' in capsys.readouterr().out


def test_convert_names_a_quantisation_the_converter_refuses():
  # DecodePng has no TFLite builtin: the converter refuses the graph.
  holder = tf.Module()
  function = tf.function(lambda x: tf.io.decode_png(x)).get_concrete_function(
      tf.TensorSpec([], tf.string))
  with pytest.raises(tflite.TFLiteError,
                     match=r'--quantize dynamic: the TFLite converter refused'):
    tflite.convert(function, holder, 'dynamic')


@pytest.mark.parametrize('flags, message', [
    (['--config', 'mask_rcnn/mask_rcnn_quickstart_shapes'],
     'model.type two_stage has no TFLite export'),
    (['--config', CONFIG, '--batch-size', '4'],
     '--batch-size 4: a TFLite model takes one image'),
    (['--config', CONFIG, '--quantize', 'int4'],
     '--quantize int4: choose from none, fp16, dynamic'),
])
def test_export_tflite_refuses_in_one_line(tmp_path, capsys, flags, message):
  out = tmp_path / 'lite'
  assert cli.main(['export', '--format', 'tflite', '--checkpoint',
                   str(tmp_path / 'none'), '--out', str(out), *flags]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('tf-mtdet export: error: '), err
  assert message in err[0]
  assert not out.exists()
  assert os.listdir(tmp_path) == []


def test_export_tflite_refuses_an_existing_folder(exports):
  with pytest.raises(tflite.TFLiteError, match='already exists'):
    tflite.export_tflite(exports['config'], exports['checkpoint'],
                         os.path.dirname(exports['lite']))
