"""predict_image, draw_detections and write_prediction on the stub model's
SavedModel (known detections)."""

import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api
import pytest

from tests.serving import conftest
from tf_mtdet.serving import adapters
from tf_mtdet.serving import predict
from tf_mtdet.serving import visualize


@pytest.fixture(scope='module')
def stub_loaded(stub_exported):
  return adapters.load(stub_exported)


def test_predict_image_returns_the_detections(stub_exported, stub_loaded,
                                              image_file):
  detections = predict.predict_image(stub_exported, image_file,
                                     score_threshold=0.3)
  assert detections['image_size'] == (60, 90)
  np.testing.assert_allclose(detections['scores'], [0.9, 0.6])
  assert detections['classes'].tolist() == [1, 2]
  assert detections['class_names'] == ['circle', 'square']
  assert detections['boxes'].shape == (2, 4)
  assert detections['masks'].shape == (2, 28, 28)
  assert detections['full_masks'].shape == (2, 60, 90)
  # The image fills the full 128-pixel width: x scale 128 / 90.
  np.testing.assert_allclose(detections['boxes'][0, [1, 3]],
                             conftest.StubDetector.FRACTIONS[0, [1, 3]] * 90,
                             rtol=1e-5)
  again = predict.predict_image(stub_loaded, image_file, score_threshold=0)
  assert again['class_names'] == ['circle', 'square', '']


def test_predict_image_bad_files_name_the_file(stub_loaded, tmp_path):
  missing = str(tmp_path / 'missing.jpg')
  with pytest.raises(predict.PredictError, match='missing.jpg'):
    predict.predict_image(stub_loaded, missing)
  text = tmp_path / 'notes.jpg'
  text.write_text('not an image')
  with pytest.raises(predict.PredictError, match='notes.jpg.*not a readable'):
    predict.predict_image(stub_loaded, str(text))
  with pytest.raises(predict.PredictError, match='no SavedModel'):
    predict.predict_image(str(tmp_path), str(text))


def test_write_prediction_picture_and_json(stub_loaded, image_file, tmp_path):
  detections = predict.predict_image(stub_loaded, image_file)
  out_png, out_json = str(tmp_path / 'out.png'), str(tmp_path / 'out.json')
  predict.write_prediction(image_file, detections, out_png, out_json)
  assert sorted(os.listdir(tmp_path)) == ['image.png', 'out.json', 'out.png']

  original = np.asarray(Image.open(image_file).convert('RGB'))
  drawn = np.asarray(Image.open(out_png).convert('RGB'))
  assert drawn.shape == original.shape
  ymin, xmin, ymax, xmax = detections['boxes'][0].astype(int)
  inside = np.abs(drawn[ymin + 3:ymax - 3, xmin + 3:xmax - 3].astype(int) -
                  original[ymin + 3:ymax - 3, xmin + 3:xmax - 3])
  assert inside.sum(-1).min() > 0  # The mask overlay tints every pixel.
  assert (drawn[-1, -1] == original[-1, -1]).all()  # Far from detections.

  with open(out_json) as f:
    record = json.load(f)
  assert (record['height'], record['width']) == (60, 90)
  assert [d['class_name'] for d in record['detections']] == ['circle',
                                                             'square']
  for i, item in enumerate(record['detections']):
    np.testing.assert_allclose(item['box'], detections['boxes'][i], rtol=1e-6)
    assert item['score'] == pytest.approx(float(detections['scores'][i]))
    assert item['class_id'] == int(detections['classes'][i])
    rle = {'size': item['mask']['size'],
           'counts': item['mask']['counts'].encode('ascii')}
    np.testing.assert_array_equal(mask_api.decode(rle),
                                  detections['full_masks'][i])


def test_write_prediction_rejects_a_different_image(stub_loaded, image_file,
                                                    tmp_path):
  detections = predict.predict_image(stub_loaded, image_file)
  other = str(tmp_path / 'other.png')
  Image.fromarray(conftest.sample_image(30, 40)).save(other)
  with pytest.raises(predict.PredictError, match='other.png'):
    predict.write_prediction(other, detections, str(tmp_path / 'x.png'))
  assert not os.path.exists(tmp_path / 'x.png')


def test_draw_detections_per_box_masks_and_determinism(stub_loaded,
                                                       image_file):
  detections = predict.predict_image(stub_loaded, image_file)
  image = conftest.sample_image()
  first = visualize.draw_detections(image, detections)
  np.testing.assert_array_equal(first,
                                visualize.draw_detections(image, detections))
  assert (image == conftest.sample_image()).all()  # Input left alone.
  # Without full-image masks the per-box masks are pasted with their boxes.
  per_box = {k: v for k, v in detections.items() if k != 'full_masks'}
  pasted = visualize.full_image_masks(per_box, 60, 90)
  agree = (pasted == detections['full_masks']).mean()
  assert agree > 0.97, agree
  assert (visualize.draw_detections(image, per_box) != image).any()
  # Nothing scores above 0.95: nothing is drawn.
  np.testing.assert_array_equal(
      visualize.draw_detections(image, detections, score_threshold=0.95),
      image)
  with pytest.raises(ValueError, match='uint8'):
    visualize.draw_detections(image.astype(np.float32), detections)


def test_class_colors_are_distinct_and_stable():
  colors = [visualize.class_color(i) for i in range(1, 21)]
  assert len(set(colors)) == 20
  assert colors == [visualize.class_color(i) for i in range(1, 21)]


def test_draw_detections_puts_the_best_label_on_top():
  """Two classes on one box (per-class NMS): the higher score's label is the
  one drawn last, whatever the order of the detections."""
  image = np.zeros([60, 90, 3], np.uint8)
  for order in ([0, 1], [1, 0]):
    detections = {'boxes': np.array([[20., 10., 50., 80.]] * 2)[order],
                  'scores': np.array([0.9, 0.4])[order],
                  'classes': np.array([1, 2])[order],
                  'class_names': [['circle', 'square'][i] for i in order]}
    drawn = visualize.draw_detections(image, detections)
    # The label box's left edge just above the box: the best class's colour.
    assert tuple(drawn[19, 10]) == visualize.class_color(1), order
