"""Shared fixtures for the evaluation tests."""

import json
import os

import pytest

# The shared datasets live next to the repository: <repo>/../shared/data.
COCO128_JSON = os.path.join(os.path.dirname(__file__), '..', '..', '..',
                            'shared', 'data', 'coco128', 'annotations',
                            'instances.json')


@pytest.fixture(scope='session')
def coco128_json() -> str:
  """Path of the coco128 ground truth (skips when the data is absent)."""
  if not os.path.exists(COCO128_JSON):
    pytest.skip(f'coco128 annotations not found at {COCO128_JSON} '
                '(expected under ../shared/data relative to the repo root)')
  return COCO128_JSON


@pytest.fixture(scope='session')
def coco128_gt(coco128_json):
  """A pycocotools COCO object of coco128."""
  from pycocotools import coco  # pylint: disable=g-import-not-at-top
  import contextlib, io  # pylint: disable=g-import-not-at-top,multiple-imports
  with contextlib.redirect_stdout(io.StringIO()):
    return coco.COCO(coco128_json)


@pytest.fixture
def write_coco_json(tmp_path):
  """Returns `write(images, annotations, categories) -> path` (in tmp_path)."""

  def write(images, annotations, categories) -> str:
    return _write_coco_json(tmp_path, images, annotations, categories)

  return write


def _write_coco_json(directory, images, annotations, categories) -> str:
  """Writes a minimal COCO-format JSON and returns its path.

  Args:
    directory: a `tmp_path`.
    images: list of (id, height, width).
    annotations: list of dicts with at least `image_id`, `category_id`,
      `bbox` [x, y, w, h]; `id`, `area`, `iscrowd` are filled in.
    categories: list of (id, name).

  Returns:
    The file path.
  """
  anns = []
  for i, ann in enumerate(annotations):
    ann = dict(ann)
    ann.setdefault('id', i + 1)
    ann.setdefault('iscrowd', 0)
    ann.setdefault('area', float(ann['bbox'][2] * ann['bbox'][3]))
    anns.append(ann)
  dataset = {
      'images': [{'id': i, 'height': h, 'width': w, 'file_name': f'{i}.jpg'}
                 for i, h, w in images],
      'annotations': anns,
      'categories': [{'id': i, 'name': n} for i, n in categories],
  }
  path = os.path.join(str(directory), 'test-annotations.json')
  with open(path, 'w') as f:
    json.dump(dataset, f)
  return path
