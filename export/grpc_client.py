"""Sends an image file to TF Serving's gRPC API and prints the detections.

    python export/grpc_client.py --image photo.jpg \
        --server localhost:8500 --model mtdet [--version 3] [--masks]

Uses the `image_bytes` signature (the file's encoded bytes as a [1] string
tensor) and asks only for the outputs it prints (`output_filter`); `--masks`
adds the per-box and full-image masks.
"""

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

DETECTION_OUTPUTS = ('detection_boxes', 'detection_scores',
                     'detection_classes', 'detection_class_names',
                     'num_detections')
MASK_OUTPUTS = ('detection_masks', 'detection_full_masks')
# Full-image masks exceed gRPC's default 4 MiB message limit quickly.
_MAX_MESSAGE_BYTES = 512 * 1024 * 1024


def build_request(image_bytes: bytes,
                  model_name: str = 'mtdet',
                  signature_name: str = 'image_bytes',
                  version: Optional[int] = None,
                  output_filter: Sequence[str] = DETECTION_OUTPUTS
                  ) -> predict_pb2.PredictRequest:
  """A `PredictRequest` for one encoded image.

  Args:
    image_bytes: The encoded image file.
    model_name: The model's name in the server config.
    signature_name: `image_bytes` (or `tf_example` with serialized Examples).
    version: A version number; None = the server's latest.
    output_filter: Outputs to return; empty = all.
  """
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = int(version)
  request.inputs['inputs'].CopyFrom(
      tf.make_tensor_proto([image_bytes], dtype=tf.string, shape=[1]))
  request.output_filter.extend(output_filter)
  return request


def parse_response(response: predict_pb2.PredictResponse,
                   score_threshold: float = 0.0) -> List[Dict[str, Any]]:
  """The first image's detections.

  Returns:
    One dict per detection: `box` [ymin, xmin, ymax, xmax] in original image
    pixels, `score`, `class_id`, `class_name`, and with masks in the response
    `mask` (per-box probabilities) and `full_mask` (0/1, image pixels).
  """
  outputs = {k: tf.make_ndarray(v)[0] for k, v in response.outputs.items()}
  detections = []
  for i in range(int(outputs['num_detections'])):
    score = float(outputs['detection_scores'][i])
    if score < score_threshold:
      continue
    detection = {
        'box': [float(v) for v in outputs['detection_boxes'][i]],
        'score': score,
        'class_id': int(outputs['detection_classes'][i]),
        'class_name': outputs['detection_class_names'][i].decode('utf-8'),
    }
    if 'detection_masks' in outputs:
      detection['mask'] = outputs['detection_masks'][i]
    if 'detection_full_masks' in outputs:
      detection['full_mask'] = outputs['detection_full_masks'][i]
    detections.append(detection)
  return detections


def format_detections(detections: Sequence[Dict[str, Any]]) -> str:
  lines = [f'{len(detections)} detection(s)']
  for d in detections:
    box = ', '.join(f'{v:.1f}' for v in d['box'])
    name = d['class_name'] or str(d['class_id'])
    extra = (f'  mask area {int(d["full_mask"].sum())} px'
             if 'full_mask' in d else '')
    lines.append(f'  {name:<20s} {d["score"]:.3f}  [{box}]{extra}')
  return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--image', required=True, help='JPEG/PNG/GIF/BMP file')
  p.add_argument('--server', default='localhost:8500',
                 help='gRPC host:port (default: %(default)s)')
  p.add_argument('--model', default='mtdet', help='model name in the config')
  p.add_argument('--version', type=int, help='version (default: latest)')
  p.add_argument('--signature', default='image_bytes')
  p.add_argument('--score-threshold', type=float, default=0.3)
  p.add_argument('--timeout', type=float, default=60.0, help='seconds')
  p.add_argument('--masks', action='store_true',
                 help='also fetch per-box and full-image masks')
  return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  try:
    with open(args.image, 'rb') as f:
      image_bytes = f.read()
  except OSError as e:
    print(f'{args.image}: {e.strerror or e}', file=sys.stderr)
    return 1
  outputs = DETECTION_OUTPUTS + (MASK_OUTPUTS if args.masks else ())
  request = build_request(image_bytes, args.model, args.signature,
                          args.version, outputs)
  options = [('grpc.max_receive_message_length', _MAX_MESSAGE_BYTES)]
  with grpc.insecure_channel(args.server, options=options) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Predict(request, timeout=args.timeout)
    except grpc.RpcError as e:
      print(f'{args.server}: {e.code().name}: {e.details()}', file=sys.stderr)
      return 1
  print(format_detections(parse_response(response, args.score_threshold)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
