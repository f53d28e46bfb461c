"""A value that does not fit: where it is, what it is, and how errors show it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, format_type

# --- rejections ----------------------------------------------------------------------

_NO_VALUE: Any = object()


class _Rejected(Exception):
    """A value that does not fit; ``index`` is relative to the array being converted."""

    def __init__(
        self, index: int | None, problem: str, hint: str, source: str, declared: DataType,
        value: Any = _NO_VALUE,
    ) -> None:
        super().__init__(problem)
        self.index, self.problem, self.hint, self.value = index, problem, hint, value
        self.source, self.declared, self.path = source, format_type(declared), ""


def _reject(
    array: pa.Array, index: int | None, problem: str, hint: str, declared: DataType
) -> NoReturn:
    value = _python(array, index) if index is not None else _NO_VALUE
    raise _Rejected(index, problem, hint, _type_text(array.type), declared, value)


def _python(array: pa.Array | pa.ChunkedArray, index: int) -> Any:
    try:
        return array[index].as_py()
    except (ValueError, OverflowError, TypeError):  # no Python equivalent: year 10000, 1 ns
        return _Printed(array.slice(index, 1).to_string(indent=0, window=1).strip("[]\n "))


class _Printed(str):
    """A value as Arrow prints it, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_text(t: pa.DataType) -> str:
    return str(t.storage_type if isinstance(t, pa.BaseExtensionType) else t)


def _first(mask: pa.Array) -> int | None:
    index = pc.index(mask, True).as_py()
    return None if index < 0 else int(index)


def _locate(array: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element ``convert`` fails on (bisection: O(n) work in total)."""
    start, length = 0, len(array)
    while length > 1:
        half = length // 2
        try:
            convert(array.slice(start, half))
        except pa.ArrowInvalid:
            length = half
            continue
        start, length = start + half, length - half
    return start


def _cast(
    array: pa.Array, target: pa.DataType, declared: DataType, why: Callable[[Any], str],
    hint: str, shown: pa.Array | None = None,
) -> pa.Array:
    """Safe-cast ``array``; on failure reject its first failing value, explained by ``why``.

    ``shown`` is the array as the user gave it, when ``array`` was rewritten for parsing.
    """
    try:
        return pc.cast(array, target, safe=True)
    except pa.ArrowInvalid:
        index = _locate(array, lambda part: pc.cast(part, target, safe=True))
        _reject(array if shown is None else shown, index, why(_python(array, index)), hint,
                declared)


