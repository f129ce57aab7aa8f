"""A tiny Torch7 ``.t7`` writer for tests: enough of the binary format (numbers, strings, tables,
booleans, torch objects, float tensors and storages) to write an ``nn.Sequential`` of the layers
the universal-style-transfer releases use, from a PyTorch ``nn.Sequential``."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn


class Obj:
    """A torch object of class ``cls`` whose fields are ``fields`` (written as a Lua table)."""

    def __init__(self, cls: str, **fields: Any) -> None:
        self.cls, self.fields = cls, fields


class _Writer:
    def __init__(self, f: Any) -> None:
        self.f, self.count = f, 0

    def _i(self, v: int) -> None:
        self.f.write(struct.pack("i", v))

    def _l(self, v: int) -> None:
        self.f.write(struct.pack("l", v))  # native long, as Torch7 on 64-bit Linux and torchfile read it

    def _s(self, s: bytes) -> None:
        self._i(len(s))
        self.f.write(s)

    def _index(self) -> None:
        self.count += 1
        self._i(self.count)

    def _torch_header(self, cls: str) -> None:
        self._i(4)
        self._index()
        self._s(b"V 1")
        self._s(cls.encode())

    def obj(self, x: Any) -> None:
        if x is None:
            self._i(0)
        elif isinstance(x, bool):
            self._i(5)
            self._i(int(x))
        elif isinstance(x, (int, float)):
            self._i(1)
            self.f.write(struct.pack("d", float(x)))
        elif isinstance(x, (str, bytes)):
            self._i(2)
            self._s(x.encode() if isinstance(x, str) else x)
        elif isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x, dtype=np.float32)
            self._torch_header("torch.FloatTensor")
            self._i(a.ndim)
            for n in a.shape:
                self._l(n)
            for n in a.strides:
                self._l(n // 4)
            self._l(1)  # storage offset, 1-based
            self._torch_header("torch.FloatStorage")
            self._l(a.size)
            self.f.write(a.tobytes())
        elif isinstance(x, Obj):
            self._torch_header(x.cls)
            self.obj(dict(x.fields))
        elif isinstance(x, list):
            self.obj({i + 1: v for i, v in enumerate(x)})
        elif isinstance(x, dict):
            self._i(3)
            self._index()
            self._i(len(x))
            for k, v in x.items():
                self.obj(k)
                self.obj(v)
        else:
            raise TypeError(f"cannot write {type(x).__name__}")


def module_obj(m: nn.Module) -> Obj:
    """The Torch7 object of one PyTorch layer of the releases' kinds."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return Obj("nn.SpatialConvolution", weight=m.weight.detach().numpy(), bias=m.bias.detach().numpy(),
                   nInputPlane=m.in_channels, nOutputPlane=m.out_channels, kW=kw, kH=kh, dW=1, dH=1, padW=0, padH=0)
    if isinstance(m, nn.ReflectionPad2d):
        return Obj("nn.SpatialReflectionPadding", pad_l=1, pad_r=1, pad_t=1, pad_b=1)
    if isinstance(m, nn.ReLU):
        return Obj("nn.ReLU", inplace=False)
    if isinstance(m, nn.MaxPool2d):
        return Obj("nn.SpatialMaxPooling", kW=2, kH=2, dW=2, dH=2, padW=0, padH=0, ceil_mode=bool(m.ceil_mode))
    if isinstance(m, nn.Upsample):
        return Obj("nn.SpatialUpSamplingNearest", scale_factor=2)
    raise TypeError(f"no Torch7 layer for {type(m).__name__}")


def write_sequential(path: Path, seq: nn.Sequential) -> Path:
    with open(path, "wb") as f:
        _Writer(f).obj(Obj("nn.Sequential", modules=[module_obj(m) for m in seq], train=False))
    return path
