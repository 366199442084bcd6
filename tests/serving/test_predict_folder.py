"""`predict` on a folder or glob of images (COCO results JSON, one picture
each, nothing partial) and on a plain install without tensorflow_serving."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
from pycocotools import mask as mask_api
import pytest

from tests.serving import conftest
from tf_mtdet import cli
from tf_mtdet.serving import predict

SIZES = {'b.png': (60, 90), 'a.jpg': (50, 40), 'c.bmp': (30, 70)}


@pytest.fixture(scope='module')
def runner(stub_exported):
  return predict.load_model(stub_exported)


@pytest.fixture
def folder(tmp_path):
  images = tmp_path / 'images'
  images.mkdir()
  for i, (name, size) in enumerate(SIZES.items()):
    Image.fromarray(conftest.sample_image(*size, seed=i)).save(images / name)
  (images / 'notes.txt').write_text('not an image')
  return images


def test_list_images_folder_glob_and_file(folder):
  assert [os.path.basename(f) for f in predict.list_images(str(folder))] == [
      'a.jpg', 'b.png', 'c.bmp']
  assert predict.list_images(str(folder / '*.png')) == [str(folder / 'b.png')]
  with pytest.raises(predict.PredictError, match=r'\*.gif: the pattern'):
    predict.list_images(str(folder / '*.gif'))
  (folder.parent / 'empty').mkdir()
  with pytest.raises(predict.PredictError, match='empty: no image files'):
    predict.list_images(str(folder.parent / 'empty'))


def test_predict_files_coco_results_and_pictures(runner, folder, tmp_path):
  files = predict.list_images(str(folder))
  out, results_path = tmp_path / 'pictures', tmp_path / 'results.json'
  summary = predict.predict_files(runner, files, str(out), str(results_path),
                                  score_threshold=0.5)
  assert sorted(os.listdir(out)) == ['a.png', 'b.png', 'c.png']
  assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]
  results = json.loads(results_path.read_text())
  # The stub finds three detections per image; two score >= 0.5 (drawn).
  assert summary == {'images': 3, 'detections': 6, 'results': 9}
  assert [r['image_id'] for r in results] == [1] * 3 + [2] * 3 + [3] * 3
  for path, image_id in zip(files, (1, 2, 3)):
    expected = predict.predict_image(runner, path, score_threshold=0.0)
    entries = [r for r in results if r['image_id'] == image_id]
    assert {r['file_name'] for r in entries} == {os.path.basename(path)}
    for entry, box, score, cls, mask in zip(
        entries, expected['boxes'], expected['scores'], expected['classes'],
        expected['full_masks']):
      ymin, xmin, ymax, xmax = box
      np.testing.assert_allclose(entry['bbox'],
                                 [xmin, ymin, xmax - xmin, ymax - ymin],
                                 rtol=1e-6)
      assert entry['score'] == pytest.approx(float(score))
      assert entry['category_id'] == int(cls)
      assert isinstance(entry['segmentation']['counts'], str)
      np.testing.assert_array_equal(mask_api.decode(
          {'size': entry['segmentation']['size'],
           'counts': entry['segmentation']['counts'].encode('ascii')}), mask)
    picture = np.asarray(Image.open(out / (os.path.splitext(
        os.path.basename(path))[0] + '.png')))
    assert picture.shape[:2] == SIZES[os.path.basename(path)]
  # pycocotools reads it as detections of the listed images.
  ground_truth = coco_api.COCO()
  ground_truth.dataset = {
      'images': [{'id': i, 'height': SIZES[n][0], 'width': SIZES[n][1]}
                 for i, n in enumerate(sorted(SIZES), 1)],
      'categories': [{'id': k, 'name': v}
                     for k, v in conftest.LABEL_MAP.items()],
      'annotations': []}
  ground_truth.createIndex()
  assert len(ground_truth.loadRes(str(results_path)).anns) == 9


def test_image_ids_from_annotations(folder, tmp_path):
  files = predict.list_images(str(folder))
  annotations = tmp_path / 'instances.json'
  annotations.write_text(json.dumps({'images': [
      {'id': 7, 'file_name': 'val/b.png'}, {'id': 3, 'file_name': 'a.jpg'},
      {'id': 12, 'file_name': 'c.bmp'}]}))
  assert predict.image_ids(files, str(annotations)) == [3, 7, 12]
  annotations.write_text(json.dumps({'images': [{'id': 3,
                                                 'file_name': 'a.jpg'}]}))
  with pytest.raises(predict.PredictError,
                     match=r'b.png: not in .*instances.json.*1 more'):
    predict.image_ids(files, str(annotations))


def test_a_bad_image_leaves_nothing(runner, folder, tmp_path):
  (folder / 'broken.png').write_bytes(b'\x89PNG not really')
  out, results_path = tmp_path / 'pictures', tmp_path / 'results.json'
  with pytest.raises(predict.PredictError, match='broken.png'):
    predict.predict_files(runner, predict.list_images(str(folder)), str(out),
                          str(results_path))
  assert sorted(os.listdir(tmp_path)) == ['images']


def test_cli_glob_with_annotations(stub_exported, folder, tmp_path, capsys):
  annotations = tmp_path / 'instances.json'
  annotations.write_text(json.dumps({'images': [
      {'id': 5, 'file_name': 'a.jpg'}, {'id': 6, 'file_name': 'b.png'}]}))
  results_path = tmp_path / 'results.json'
  assert cli.main(['predict', '--model', stub_exported, '--image',
                   str(folder / '*.*g'), '--out', str(tmp_path / 'out'),
                   '--json', str(results_path), '--annotations',
                   str(annotations)]) == 0
  captured = capsys.readouterr()
  assert 'predict: 2/2 images (100%)' in captured.err
  assert '2 image(s), 4 detection(s) >= 0.3' in captured.out
  assert {r['image_id'] for r in json.loads(results_path.read_text())} == {
      5, 6}


# Blocks tensorflow_serving (the dev extra) before anything is imported,
# then runs the predict command as a plain install would.
_WITHOUT_SERVING_API = textwrap.dedent('''
    import importlib.abc
    import sys

    class BlockServingApi(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'tensorflow_serving':
          raise ModuleNotFoundError(f'No module named {name!r} (blocked)')
        return None

    sys.meta_path.insert(0, BlockServingApi())
    try:
      import tensorflow_serving.apis  # The blocker works.
      sys.exit('tensorflow_serving imported')
    except ModuleNotFoundError:
      pass
    from tf_mtdet import cli
    code = cli.main(sys.argv[1:])
    assert not [m for m in sys.modules if m.startswith('tensorflow_serving')]
    sys.exit(code)
''')


def test_predict_works_without_tensorflow_serving(stub_exported, folder,
                                                  tmp_path):
  script = tmp_path / 'plain_install.py'
  script.write_text(_WITHOUT_SERVING_API)
  out = tmp_path / 'out.png'
  result = subprocess.run(
      [sys.executable, str(script), 'predict', '--model', stub_exported,
       '--image', str(folder / 'b.png'), '--out', str(out)],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
  assert result.returncode == 0, result.stderr[-2000:]
  assert '2 detection(s) >= 0.3' in result.stdout
  assert out.exists()
