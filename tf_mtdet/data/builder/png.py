"""Minimal PNG encoders for masks.

Model Garden stores each instance mask as an 8-bit grayscale PNG through PIL. A
1-bit palette PNG whose two entries are the grey levels 0 and 1 decodes to the
same 0/1 uint8 array in `tf.io.decode_png(channels=1)` and in PIL, but packs 8
pixels per byte, so zlib sees 8x less data: on coco128's 939 masks it encodes
in 0.25 s against PIL's 1.65 s, and at zlib level 1 the masks are still smaller
than Model Garden's (masks are ~3% of a shard; the JPEG bytes dominate). Output
is deterministic for a given zlib version.
"""

import struct
import zlib

import cv2
import numpy as np

_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_BINARY_PALETTE = bytes([0, 0, 0, 1, 1, 1])  # palette index i -> grey level i
_ZLIB_LEVEL = 1


def _chunk(tag: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + tag + data +
          struct.pack('>I', zlib.crc32(tag + data)))


def _png(height: int, width: int, bit_depth: int, color_type: int,
         rows: np.ndarray, palette: bytes = b'') -> bytes:
  # Filter byte 0 (None) in front of every row.
  raw = np.zeros((rows.shape[0], rows.shape[1] + 1), np.uint8)
  raw[:, 1:] = rows
  header = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
  parts = [_SIGNATURE, _chunk(b'IHDR', header)]
  if palette:
    parts.append(_chunk(b'PLTE', palette))
  parts += [_chunk(b'IDAT', zlib.compress(raw.tobytes(), _ZLIB_LEVEL)),
            _chunk(b'IEND', b'')]
  return b''.join(parts)


def encode_binary_mask(mask: np.ndarray) -> bytes:
  """Encodes a binary mask as a 1-bit palette PNG that decodes to 0/1.

  Args:
    mask: [height, width] array; non-zero pixels are foreground.

  Returns:
    PNG bytes.
  """
  if mask.ndim != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
    raise ValueError(f'mask must be a non-empty 2-D array, got {mask.shape}')
  if mask.dtype != np.uint8:
    mask = mask.astype(np.uint8)
  if not mask.flags.c_contiguous:
    # pycocotools decodes to Fortran order. Packing strided rows is slow, and
    # OpenCV's SIMD transpose makes the C-ordered copy 6x faster than numpy.
    mask = cv2.transpose(np.ascontiguousarray(mask.T))
  packed = np.packbits(mask, axis=1)
  return _png(mask.shape[0], mask.shape[1], 1, 3, packed, _BINARY_PALETTE)


def encode_label_map(labels: np.ndarray) -> bytes:
  """Encodes a uint8 label map (e.g. semantic classes) as 8-bit grayscale PNG.

  Args:
    labels: [height, width] uint8 array.

  Returns:
    PNG bytes.
  """
  if labels.ndim != 2 or labels.dtype != np.uint8:
    raise ValueError(
        f'labels must be a 2-D uint8 array, got {labels.dtype} {labels.shape}')
  return _png(labels.shape[0], labels.shape[1], 8, 0, labels)
