"""Turn incoming Arrow data into exactly the declared schema of a dataset, or fail clearly.

Columns are matched by name and put in declared order; undeclared input columns are
dropped with one warning each; a missing declared column is an error. Every value is
converted losslessly or rejected with a ``SchemaError`` that names the dataset, the
column, the source and declared types, an example value and the row's primary key.

What each declared type accepts (dictionary-encoded arrays are decoded first, extension
types are read through their storage, an all-null column of any type is accepted):

- integers: any integer, floats and decimals with whole values, numeric text;
- float32/float64: integers (exactly representable: |x| <= 2**24 / 2**53), floats,
  decimals, numeric text (``nan``, ``inf``); rounding to the declared precision is
  accepted, a finite value that overflows to infinity is not;
- float16, bfloat16, float8_e4m3, float8_e5m2: as float32, rounded to nearest-even;
  finite values beyond the largest finite value, and infinities for float8_e4m3, are
  errors; NaN keeps its sign and the top bits of its payload;
- decimal(p,s): integers, decimals, floats (their shortest text must fit), numeric text;
- bool: bool, text ``true``/``false``/``1``/``0`` (any case), integers that are 0 or 1;
- string, string(n): text of any Arrow string type, UTF-8 binary, uuid (as its 36-char
  text), Arrow intervals and durations (as ISO 8601 duration text); ``string(n)`` counts Unicode code points, so a combining accent is one more;
- binary: any binary or string type; uuid: 16-byte binary, or text in the canonical
  8-4-4-4-12 form or as 32 hex digits (any case);
- date: date32/date64 (whole days), ISO 8601 text ``YYYY-MM-DD``;
  time: time32/time64 of any unit, text ``HH:MM[:SS[.fraction]]``;
- timestamp: timestamps of any unit without a time zone, ISO 8601 text without an offset;
  timestamp_tz: timestamps of any unit and zone (converted to UTC), text with an offset or
  ``Z``; naive timestamps and text without an offset are taken to be UTC. Fractions finer
  than a microsecond must be zero;
- json: text (checked with ``json.loads``, stored as given; text whose field is tagged
  ``json`` is taken as checked by its producer: PostgreSQL's json and jsonb, the store's
  own files), or structs, lists and maps
  (written as compact JSON; decimals, dates and times become JSON strings);
- interval: ISO 8601 duration text as PostgreSQL prints it (``P1Y2M-3DT4H5M6.5S``, a
  sign on each part, seconds to the microsecond; stored as given), Arrow month_day_nano
  intervals and durations (written as such text);
- list<T>: list, large_list, fixed_size_list and list views; map<K,V>: maps, or lists of
  two-field structs (``key``/``value``); struct<...>: structs, fields matched by name
  (undeclared fields are dropped with a warning, missing ones are an error).

In text input (CSV) an empty string is a missing value for every type but string and
binary. Leading and trailing whitespace is ignored when text is parsed as another type.

The package, by concern: ``conformer`` (the public class and its errors), ``converter``
(one array, nested types), one module per family of declared types (``numbers``,
``low_floats``, ``text``, ``temporal``, ``json_values``, ``interval_values``), ``kinds``
and ``rejections`` (what every family shares) and ``friendly`` (``to_python_friendly``).
"""

from __future__ import annotations

from dataferry.store.conform.conformer import Conformer, SchemaError, declared_schema
from dataferry.store.conform.friendly import to_python_friendly

__all__ = ["Conformer", "SchemaError", "declared_schema", "to_python_friendly"]
