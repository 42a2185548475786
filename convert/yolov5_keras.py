"""Rebuild a trained YOLOv5 in Keras from its yaml and fused weights, for LiteRT.

This is the route yolov5 itself takes to TFLite (its ``models/tf.py``): the same layers
in Keras, the PyTorch weights copied in. Written here against Keras 3 because yolov5's
own port targets Keras 2. The graph ends like ``raw.onnx``: per stride one
[1, H, W, anchors * (5 + nc)] tensor with the sigmoid applied, decoded in numpy.

Modules covered: Conv (fused conv + SiLU), C3 with Bottlenecks, SPPF, nearest Upsample,
Concat, Detect: all that yolov5n/s/m/l/x P5 models use. Channel counts come from the
weights, the wiring (``from``, repeats, kernel, stride, padding, shortcut) from the yaml.
Padding is explicit so that stride-2 convolutions pad as PyTorch does (symmetrically),
not as TensorFlow's "same" does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Imported lazily by callers: keras is in the convert profile only.


def _repeats(n: int, depth_multiple: float) -> int:
    return max(round(n * depth_multiple), 1) if n > 1 else n


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        import keras

        self.k = keras
        self.w = weights

    def conv(self, x: Any, prefix: str, stride: int = 1, padding: int | None = None) -> Any:
        """yolov5 Conv after fusing: conv with bias, then SiLU."""
        weight, bias = self.w[f"{prefix}.conv.weight"], self.w[f"{prefix}.conv.bias"]
        c2, _, kh, _ = weight.shape
        pad = kh // 2 if padding is None else padding
        if pad:
            x = self.k.layers.ZeroPadding2D(pad)(x)
        layer = self.k.layers.Conv2D(c2, kh, strides=stride, padding="valid", use_bias=True)
        x = layer(x)
        layer.set_weights([weight.transpose(2, 3, 1, 0), bias])
        return self.k.layers.Activation("silu")(x)

    def c3(self, x: Any, prefix: str, n: int, shortcut: bool) -> Any:
        a = self.conv(x, f"{prefix}.cv1")
        for j in range(n):
            y = self.conv(self.conv(a, f"{prefix}.m.{j}.cv1"), f"{prefix}.m.{j}.cv2")
            same = self.w[f"{prefix}.m.{j}.cv1.conv.weight"].shape[1] == y.shape[-1]
            a = self.k.layers.Add()([a, y]) if shortcut and same else y
        b = self.conv(x, f"{prefix}.cv2")
        return self.conv(self.k.layers.Concatenate()([a, b]), f"{prefix}.cv3")

    def sppf(self, x: Any, prefix: str, k: int) -> Any:
        x = self.conv(x, f"{prefix}.cv1")
        pool = self.k.layers.MaxPooling2D(k, strides=1, padding="same")
        y1 = pool(x)
        y2 = pool(y1)
        return self.conv(self.k.layers.Concatenate()([x, y1, y2, pool(y2)]), f"{prefix}.cv2")

    def head(self, x: Any, prefix: str, anchors: int) -> Any:
        """The Detect conv, split in two: the box logits (x, y, w, h) and the score
        logits (objectness, classes) get a conv each, so that in int8 each has its own
        scale. One shared tensor would be scaled for the objectness logits of empty
        cells (around -15) and leave the box logits a few steps of resolution: tens of
        pixels of box size at the largest anchors. After the sigmoid both are 0-1 and
        are interleaved back into yolov5's channel order."""
        weight, bias = self.w[f"{prefix}.weight"], self.w[f"{prefix}.bias"]
        per = weight.shape[0] // anchors  # 5 + nc
        box_idx = [a * per + k for a in range(anchors) for k in range(4)]
        score_idx = [a * per + k for a in range(anchors) for k in range(4, per)]
        outs = []
        for idx in (box_idx, score_idx):
            layer = self.k.layers.Conv2D(len(idx), 1, use_bias=True)
            y = layer(x)
            layer.set_weights([weight[idx].transpose(2, 3, 1, 0), bias[idx]])
            outs.append(self.k.layers.Activation("sigmoid")(y))
        box, score = outs
        pieces = []
        for a in range(anchors):
            pieces.append(box[..., 4 * a : 4 * a + 4])
            pieces.append(score[..., (per - 4) * a : (per - 4) * (a + 1)])
        return self.k.layers.Concatenate()(pieces)


def build(yaml: dict[str, Any], weights: dict[str, np.ndarray], size: int) -> Any:
    """A Keras model: [1, size, size, 3] RGB float 0-255 in, sigmoid raw heads out."""
    import keras

    b = _Builder(weights)
    gd = float(yaml.get("depth_multiple", 1.0))
    image = keras.Input((size, size, 3), batch_size=1, name="image")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    outputs: list[Any] = []
    heads: list[Any] = []
    for i, (source, n, module, args) in enumerate(yaml["backbone"] + yaml["head"]):
        prefix = f"model.{i}"
        inp = None
        if isinstance(source, int):
            inp = (outputs[-1] if outputs else x) if source == -1 else outputs[source]
        if module == "Conv":
            k = args[1] if len(args) > 1 else 1
            s = args[2] if len(args) > 2 else 1
            p = args[3] if len(args) > 3 else None
            y = b.conv(inp, prefix, stride=s, padding=k // 2 if p is None else p)
        elif module == "C3":
            shortcut = bool(args[1]) if len(args) > 1 else True
            y = b.c3(inp, prefix, _repeats(n, gd), shortcut)
        elif module == "SPPF":
            y = b.sppf(inp, prefix, int(args[1]) if len(args) > 1 else 5)
        elif module == "nn.Upsample":
            y = keras.layers.UpSampling2D(int(args[1]), interpolation="nearest")(inp)
        elif module == "Concat":
            y = keras.layers.Concatenate()([outputs[j] for j in source])
        elif module == "Detect":
            anchors = len(yaml["anchors"][0]) // 2
            heads = [
                b.head(outputs[j], f"{prefix}.m.{level}", anchors) for level, j in enumerate(source)
            ]
            y = None
        else:
            raise ValueError(f"layer {i}: module {module!r} has no Keras port here")
        outputs.append(y)
    if not heads:
        raise ValueError("the model yaml has no Detect layer")
    return keras.Model(image, heads, name="yolov5_raw_heads")
