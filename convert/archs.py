"""Classifier architectures. Both take RGB frames with values 0-255 and end in softmax.

The 1/255 rescale sits inside the model so that the int8 input is the pixel itself
(scale 1, zero point -128) and the device does no float work before inference.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers


def seed(n_classes: int, size: int = 128) -> keras.Model:
    """The research prototype, layer for layer (its rescale=1/255 moved into the model)."""
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(128, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed")


def _conv(x: keras.KerasTensor, filters: int, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    # A quicker moving average than Keras' 0.99: from scratch the weights move fast, and
    # statistics that lag behind them would skew inference-mode results.
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU(max_value=6.0)(x)


def edgecnn(n_classes: int, size: int = 128) -> keras.Model:
    """A small VGG-style CNN for the edge: about 0.6 M parameters and 0.2 GMAC at 128 px.

    Plain 3x3 convolutions with batch norm fold into int8 kernels without loss, ReLU6
    keeps activation ranges tight for per-tensor quantisation, and global average
    pooling keeps the head tiny (the seed's Flatten-Dense head alone holds 7.4 M weights).
    """
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = _conv(x, 32, strides=2)
    x = _conv(x, 32)
    x = layers.MaxPooling2D()(x)
    x = _conv(x, 64)
    x = _conv(x, 64)
    x = layers.MaxPooling2D()(x)
    x = _conv(x, 128)
    x = _conv(x, 128)
    x = layers.MaxPooling2D()(x)
    x = _conv(x, 256)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="edgecnn")


ARCHS: dict[str, Callable[[int, int], keras.Model]] = {"seed": seed, "edgecnn": edgecnn}
