"""Numpy reference forward passes of the source ResNets, written from their
own definitions (NCHW, explicit padding), and random weights in their own
names.

* torchvision `resnet.py` (timm's ResNet has the same names and blocks):
  stem conv1 7x7/2 pad 3, bn1, ReLU, max-pool 3x3/2 pad 1; Bottleneck:
  conv1 1x1, conv2 3x3 with the stride, `groups`, pad 1, conv3 1x1, each with
  BatchNorm (eval: running statistics, eps 1e-5); downsample = conv 1x1 with
  the stride + BN.
* Detectron / maskrcnn-benchmark caffe2 (`resnet.py`, `StemWithFixedBatchNorm`,
  `BottleneckWithFixedBatchNorm`): the same layout, every BN a fixed
  `x * scale + bias` (`_bn_s`, `_bn_b`); branch2a 1x1 carries the stride when
  STRIDE_IN_1X1 (MSRA), else branch2b 3x3 does (FAIR ResNeXt); branch1 is the
  projection.
"""

import numpy as np

TORCH_EPS = 1e-5


def conv2d(x, w, stride=1, pad=0, groups=1):
  """x [N, C, H, W], w [O, C / groups, kh, kw] -> [N, O, H', W'] (PyTorch)."""
  n, c, h, wd = x.shape
  o, cg, kh, kw = w.shape
  x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
  ho = (h + 2 * pad - kh) // stride + 1
  wo = (wd + 2 * pad - kw) // stride + 1
  xg = x.reshape(n, groups, cg, x.shape[2], x.shape[3])
  wg = w.reshape(groups, o // groups, cg, kh, kw)
  out = np.zeros((n, groups, o // groups, ho, wo), np.float64)
  for i in range(kh):
    for j in range(kw):
      window = xg[:, :, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
      out += np.einsum('ngchw,goc->ngohw', window, wg[..., i, j])
  return out.reshape(n, o, ho, wo)


def max_pool(x, size=3, stride=2, pad=1):
  x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)],
             constant_values=-np.inf)
  ho = (x.shape[2] - size) // stride + 1
  wo = (x.shape[3] - size) // stride + 1
  out = np.full(x.shape[:2] + (ho, wo), -np.inf)
  for i in range(size):
    for j in range(size):
      out = np.maximum(out, x[:, :, i:i + stride * ho:stride,
                              j:j + stride * wo:stride])
  return out


def relu(x):
  return np.maximum(x, 0)


def _channels(v):
  return v.reshape(1, -1, 1, 1)


class _Torch:
  """torchvision / timm names and BN."""

  def __init__(self, weights):
    self.w = weights

  def conv(self, name):
    return self.w[f'{name}.weight']

  def bn(self, name, x):
    w = self.w
    scale = w[f'{name}.weight'] / np.sqrt(w[f'{name}.running_var'] + TORCH_EPS)
    return ((x - _channels(w[f'{name}.running_mean'])) * _channels(scale) +
            _channels(w[f'{name}.bias']))

  stem_conv, stem_bn = 'conv1', 'bn1'

  @staticmethod
  def block(stage, i):
    p = f'layer{stage - 1}.{i}'
    return (f'{p}.conv1', f'{p}.bn1', f'{p}.conv2', f'{p}.bn2', f'{p}.conv3',
            f'{p}.bn3', f'{p}.downsample.0', f'{p}.downsample.1')


class _Caffe2(_Torch):
  """Detectron names; BN as a fixed scale and bias."""

  def conv(self, name):
    return self.w[f'{name}_w']

  def bn(self, name, x):
    return x * _channels(self.w[f'{name}_s']) + _channels(self.w[f'{name}_b'])

  stem_conv, stem_bn = 'conv1', 'res_conv1_bn'

  @staticmethod
  def block(stage, i):
    p = f'res{stage}_{i}'
    return (f'{p}_branch2a', f'{p}_branch2a_bn', f'{p}_branch2b',
            f'{p}_branch2b_bn', f'{p}_branch2c', f'{p}_branch2c_bn',
            f'{p}_branch1', f'{p}_branch1_bn')


def forward(weights, source, depths, groups, stride_in_1x1, image):
  """image [N, 3, H, W] -> {'2': C2, ..., '5': C5} (NCHW)."""
  net = _Caffe2(weights) if source == 'detectron' else _Torch(weights)
  x = relu(net.bn(net.stem_bn, conv2d(image, net.conv(net.stem_conv), 2, 3)))
  x = max_pool(x)
  outputs = {}
  for stage, repeats in zip(range(2, 6), depths):
    for i in range(repeats):
      conv1, bn1, conv2, bn2, conv3, bn3, proj, proj_bn = net.block(stage, i)
      stride = 2 if stage > 2 and i == 0 else 1
      s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
      y = relu(net.bn(bn1, conv2d(x, net.conv(conv1), s1)))
      y = relu(net.bn(bn2, conv2d(y, net.conv(conv2), s3, 1, groups)))
      y = net.bn(bn3, conv2d(y, net.conv(conv3)))
      shortcut = (net.bn(proj_bn, conv2d(x, net.conv(proj), stride))
                  if i == 0 else x)
      x = relu(y + shortcut)
    outputs[str(stage)] = x
  return outputs


def random_weights(source, depths, stem, widths, outs, groups, seed=0):
  """{name: float32 array} of a ResNet/ResNeXt in `source`'s names, with the
  ImageNet classifier and (torchvision) BN batch counters.

  Args:
    source: 'torchvision', 'timm' or 'detectron'.
    depths: Blocks per stage (res2..res5).
    stem: Stem channels.
    widths: Per stage, the width of the grouped 3x3 convs.
    outs: Per stage, the output channels.
    groups: Groups of the 3x3 convs.
  """
  rng = np.random.default_rng(seed)
  weights = {}
  caffe2 = source == 'detectron'
  net = _Caffe2 if caffe2 else _Torch

  def conv(name, o, c, k):
    std = np.sqrt(2.0 / (c * k * k))
    weights[f'{name}_w' if caffe2 else f'{name}.weight'] = (
        rng.normal(0, std, (o, c, k, k)).astype(np.float32))

  def bn(name, c):
    scale = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bias = rng.normal(0, 0.1, c).astype(np.float32)
    if caffe2:
      weights[f'{name}_s'], weights[f'{name}_b'] = scale, bias
    else:
      weights[f'{name}.weight'], weights[f'{name}.bias'] = scale, bias
      weights[f'{name}.running_mean'] = rng.normal(0, 0.1, c).astype(
          np.float32)
      weights[f'{name}.running_var'] = rng.uniform(0.5, 2.0, c).astype(
          np.float32)
      weights[f'{name}.num_batches_tracked'] = np.array(7, np.int64)

  conv(net.stem_conv, stem, 3, 7)
  bn(net.stem_bn, stem)
  cin = stem
  for stage, repeats in zip(range(2, 6), depths):
    width, out = widths[stage - 2], outs[stage - 2]
    for i in range(repeats):
      conv1, bn1, conv2, bn2, conv3, bn3, proj, proj_bn = net.block(stage, i)
      conv(conv1, width, cin, 1)
      bn(bn1, width)
      conv(conv2, width, width // groups, 3)
      bn(bn2, width)
      conv(conv3, out, width, 1)
      bn(bn3, out)
      if i == 0:
        conv(proj, out, cin, 1)
        bn(proj_bn, out)
      cin = out
  if caffe2:
    weights['pred_w'] = rng.normal(0, 0.01, (10, cin)).astype(np.float32)
    weights['pred_b'] = np.zeros(10, np.float32)
  else:
    weights['fc.weight'] = rng.normal(0, 0.01, (10, cin)).astype(np.float32)
    weights['fc.bias'] = np.zeros(10, np.float32)
  return weights
