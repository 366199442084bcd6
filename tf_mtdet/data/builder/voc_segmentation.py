"""VOC semantic segmentation labels for the builder.

VOC2012 `SegmentationClass/<id>.png` are palette PNGs whose pixel values are
the class indices (0 background, 1-20 the classes in VOC's alphabetical
order, 255 the "void" boundary, kept as the ignore label). SBD's
`cls/<id>.mat` (the train-aug labels) hold a MATLAB struct `GTcls` whose
`Segmentation` field is the same class map. `attach_label_files` finds each
image's label by its VOC id in the given folders (first folder first), so
VOC07 trainval + VOC12 train-aug builds in one run; images without a label
are written with an all-ignore map and counted in the summary.
"""

import os
from typing import Sequence

import numpy as np
from PIL import Image

from tf_mtdet.data.builder import records

EXTENSIONS = ('.png', '.mat')


def read_label_file(path: str) -> np.ndarray:
  """A [H, W] uint8 class map from a VOC PNG or an SBD .mat.

  Raises:
    records.BuildError: unreadable, not a palette or grayscale PNG, no
      `GTcls.Segmentation` in the .mat, or values above 255.
  """
  if path.endswith('.mat'):
    from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
    try:
      mat = scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)
      labels = np.asarray(mat['GTcls'].Segmentation)
    except (OSError, ValueError, KeyError, AttributeError) as e:
      raise records.BuildError(
          f'{path}: not an SBD cls .mat with GTcls.Segmentation ({e})') from e
  else:
    try:
      with Image.open(path) as im:
        if im.mode not in ('P', 'L'):
          raise records.BuildError(
              f'{path}: a segmentation PNG must be palette or grayscale '
              f'(class indices), got mode {im.mode}')
        # Palette images read as their indices, not the palette colours.
        labels = np.asarray(im)
    except OSError as e:
      raise records.BuildError(f'{path}: cannot read ({e})') from e
  if labels.ndim != 2 or labels.size == 0:
    raise records.BuildError(f'{path}: expected a 2-D class map, got shape '
                             f'{list(labels.shape)}')
  if labels.min() < 0 or labels.max() > 255:
    raise records.BuildError(f'{path}: class ids outside 0..255')
  return labels.astype(np.uint8)


def attach_label_files(source: records.DatasetSource,
                       label_dirs: Sequence[str]) -> int:
  """Sets `semantic_path` of every image that has a label file.

  Args:
    source: A VOC dataset (`voc_id` in each image's source entry).
    label_dirs: Folders of `<id>.png` / `<id>.mat`, searched in order.

  Returns:
    The number of images without a label file.

  Raises:
    records.BuildError: a folder does not exist.
  """
  for directory in label_dirs:
    if not os.path.isdir(directory):
      raise records.BuildError(f'{directory}: segmentation label folder does '
                               'not exist')
  missing = 0
  for image in source.images:
    stem = (image.source_entry or {}).get(
        'voc_id', os.path.splitext(image.file_name)[0])
    image.semantic_path = next(
        (os.path.join(d, stem + ext) for d in label_dirs for ext in EXTENSIONS
         if os.path.exists(os.path.join(d, stem + ext))), None)
    missing += image.semantic_path is None
  return missing
