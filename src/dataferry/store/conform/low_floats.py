"""float16, bfloat16 and float8: rounding into their bits and reading them back."""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType
from dataferry.store.conform.rejections import _first, _reject


@dataclass(frozen=True)
class _Format:
    """A binary float format: sign, ``exponent`` bits, ``mantissa`` explicit bits."""

    name: str
    exponent: int
    mantissa: int
    ieee: bool  # all-ones exponent = inf/NaN; float8_e4m3 (FN) uses it for numbers, NaN only
    storage: pa.DataType

    @property
    def bias(self) -> int:
        return (1 << (self.exponent - 1)) - 1

    @property
    def max_finite(self) -> float:
        top = (1 << self.exponent) - (2 if self.ieee else 1)
        fraction = 2 - 2.0 ** -(self.mantissa - (0 if self.ieee else 1))
        return fraction * 2.0 ** (top - self.bias)


_FORMATS = {
    "float16": _Format("float16", 5, 10, True, pa.float16()),
    "bfloat16": _Format("bfloat16", 8, 7, True, pa.uint16()),
    "float8_e4m3": _Format("float8_e4m3", 4, 3, False, pa.uint8()),
    "float8_e5m2": _Format("float8_e5m2", 5, 2, True, pa.uint8()),
}
_MANTISSA_BITS = {16: 10, 32: 23, 64: 52}


def _pow2(exponents: pa.Array) -> pa.Array:
    """2.0**k for int64 k in -1022..1023, exactly, from the float64 bit pattern."""
    return pc.shift_left(pc.add(exponents, 1023), 52).view(pa.float64())


def _exponent(values: pa.Array, low: int) -> pa.Array:
    """max(floor(log2(|x|)), low) for float64 x, read from the bits (exact)."""
    biased = pc.bit_wise_and(pc.shift_right(values.view(pa.int64()), 52), 0x7FF)
    return pc.max_element_wise(pc.subtract(biased, 1023), low)


def _encode(values: pa.Array, fmt: _Format, declared: DataType) -> pa.Array:
    """Round floats to nearest-even into ``fmt``'s bits; overflow (and inf for FN) is rejected."""
    width = values.type.bit_width
    x = pc.cast(values, pa.float64())  # exact for every finite value and infinity
    emin = 1 - fmt.bias
    finite, nan = pc.is_finite(x), pc.is_nan(x)
    quantum = _pow2(pc.subtract(_exponent(x, emin), fmt.mantissa))
    rounded = pc.multiply(pc.round(pc.divide(pc.abs(x), quantum), round_mode="half_to_even"),
                          quantum)
    index = _first(pc.and_(finite, pc.greater(rounded, fmt.max_finite)))
    if index is not None:
        _reject(values, index, f"is beyond the largest finite {fmt.name} ({fmt.max_finite:g})",
                "scale the values, or declare a wider float type", declared)
    if not fmt.ieee:
        index = _first(pc.is_inf(x))
        if index is not None:
            _reject(values, index, f"is infinite, and {fmt.name} has no infinity",
                    "declare float8_e5m2 or a wider float type", declared)
    rounded = pc.if_else(finite, rounded, 0.0)
    exponent = _exponent(rounded, emin)
    fields = pc.add(pc.multiply(pc.cast(pc.add(exponent, fmt.bias - 1), pa.float64()),
                                float(1 << fmt.mantissa)),
                    pc.multiply(rounded, _pow2(pc.subtract(fmt.mantissa, exponent))))
    bits = pc.cast(fields, pa.int64())
    ones = ((1 << fmt.exponent) - 1) << fmt.mantissa
    raw = pc.cast(values.view(getattr(pa, f"uint{width}")()), pa.uint64())
    if fmt.ieee:  # keep the top bits of a NaN's payload; make sure it stays a NaN
        payload = pc.bit_wise_and(pc.shift_right(raw, _u64(_MANTISSA_BITS[width] - fmt.mantissa)),
                                  _u64((1 << fmt.mantissa) - 1))
        payload = pc.cast(payload, pa.int64())
        quiet = pc.if_else(pc.equal(payload, 0), 1 << (fmt.mantissa - 1), payload)
        nan_bits = pc.add(quiet, ones)
    else:
        nan_bits = pa.scalar((1 << (fmt.exponent + fmt.mantissa)) - 1, pa.int64())
    special = pc.if_else(nan, nan_bits, pa.scalar(ones, pa.int64()))
    bits = pc.if_else(finite, bits, special)
    negative = pc.not_equal(pc.shift_right(raw, _u64(width - 1)), _u64(0))
    sign = 1 << (fmt.exponent + fmt.mantissa)
    bits = pc.if_else(negative, pc.bit_wise_or(bits, sign), bits)
    storage = pa.uint16() if fmt.name == "float16" else fmt.storage
    result = pc.cast(bits, storage)
    return result.view(pa.float16()) if fmt.name == "float16" else result


def _u64(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.uint64())


@functools.cache
def _decode_table(name: str) -> pa.Array:
    """float32 value of every bit pattern of a float8 format."""
    fmt = _FORMATS[name]
    patterns = []
    for bits in range(1 << (1 + fmt.exponent + fmt.mantissa)):
        sign = (bits >> (fmt.exponent + fmt.mantissa)) << 31
        exponent = (bits >> fmt.mantissa) & ((1 << fmt.exponent) - 1)
        mantissa = bits & ((1 << fmt.mantissa) - 1)
        top = (1 << fmt.exponent) - 1
        if fmt.ieee and exponent == top:
            patterns.append(sign | 0x7F800000 | mantissa << (23 - fmt.mantissa))
        elif not fmt.ieee and exponent == top and mantissa == (1 << fmt.mantissa) - 1:
            patterns.append(sign | 0x7FC00000)
        else:
            significand = mantissa + ((1 << fmt.mantissa) if exponent else 0)
            value = math.ldexp(significand, max(exponent, 1) - fmt.bias - fmt.mantissa)
            patterns.append(sign | struct.unpack("<I", struct.pack("<f", value))[0])
    return pa.array(patterns, pa.uint32()).view(pa.float32())


def _decode(bits: pa.Array, fmt: _Format) -> pa.Array:
    """The float32 values of ``fmt`` bit patterns (exact: every one is a float32)."""
    if fmt.name == "float16":
        return pc.cast(bits.view(pa.float16()) if bits.type != pa.float16() else bits,
                       pa.float32())
    if fmt.name == "bfloat16":
        high = pc.shift_left(pc.cast(bits, pa.uint32()), pa.scalar(16, pa.uint32()))
        return high.view(pa.float32())
    return pc.take(_decode_table(fmt.name), bits)
