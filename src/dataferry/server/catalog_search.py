"""The catalog search's index: which datasets' texts hold every word of a search.

A search matches a dataset when each of its words (the search in lower case, split on
whitespace) occurs in the dataset's text (its ref, description and column names in
lower case). Scanning every text per word costs milliseconds at 100,000 datasets; this
index answers from postings built once per model instead, with exactly the same results:

- A word holds no whitespace, so it occurs in a text exactly when it occurs in one of
  the text's whitespace-separated *tokens*. The index keeps the distinct tokens of all
  texts (column names repeat across datasets, so there are far fewer than words) and,
  for each, the positions of the datasets whose text has it.
- For each substring of one, two or three characters of a token, the tokens holding it.
  A word of up to three characters is such a substring: its tokens are looked up. A
  longer word's tokens hold all of its three-character substrings: they are
  intersected, and only those candidates are checked against the word itself.
- The datasets of a word are the union of its tokens' positions; a search's are the
  intersection over its words (and the team's).

Positions are indexes into the caller's list (the catalog's, sorted by ref), so the
matches come back in that order, for paging.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import numpy.typing as npt

Positions = npt.NDArray[np.int32]
"""Ascending indexes into the list the index was built from."""
_LOOPED = 16
"""Up to this many postings lists are gathered one by one; more, with one vectorized pass."""


class _Postings:
    """Sorted lists of integers by key, packed in one array (keys -> slices)."""

    def __init__(self, lists: Sequence[list[int]]) -> None:
        lengths = np.fromiter((len(values) for values in lists), np.int64, len(lists))
        self.offsets = np.zeros(len(lists) + 1, np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.values: Positions = np.fromiter(chain.from_iterable(lists), np.int32,
                                             int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def at(self, key: int) -> Positions:
        return self.values[self.offsets[key]:self.offsets[key + 1]]

    def gather(self, keys: Positions) -> Positions:
        """The values of every key in ``keys``, concatenated (not sorted, not unique)."""
        if len(keys) <= _LOOPED:
            return np.concatenate([self.values[:0], *(self.at(key) for key in keys.tolist())])
        starts, ends = self.offsets[keys], self.offsets[keys + 1]
        lengths = ends - starts
        # value i of the result is values[starts[k] + (i - first[k])] for its key k
        first = np.cumsum(lengths) - lengths
        shift = np.repeat(starts - first, lengths)
        gathered: Positions = self.values[np.arange(len(shift), dtype=np.int64) + shift]
        return gathered


def _member(values: Positions, sorted_pool: Positions) -> npt.NDArray[np.bool_]:
    """For each of ``values``, whether ``sorted_pool`` holds it."""
    found = np.searchsorted(sorted_pool, values)
    found[found == len(sorted_pool)] = 0
    return np.asarray(sorted_pool[found] == values)


class SearchIndex:
    """Built from the catalog's texts (lower case) and each dataset's team, in the
    catalog's order; read-only afterwards, so threads may share it."""

    def __init__(self, texts: Sequence[str], teams: Sequence[str]) -> None:
        assert len(texts) == len(teams)
        self.size = len(texts)
        token_ids: dict[str, int] = {}
        datasets: list[list[int]] = []
        for position, text in enumerate(texts):
            for token in set(text.split()):
                found = token_ids.setdefault(token, len(token_ids))
                if found == len(datasets):
                    datasets.append([position])
                else:
                    datasets[found].append(position)
        self.tokens = list(token_ids)
        self._datasets = _Postings(datasets)
        gram_ids: dict[str, int] = {}
        holders: list[list[int]] = []
        for token_id, token in enumerate(self.tokens):
            for gram in _grams(token):
                found = gram_ids.setdefault(gram, len(gram_ids))
                if found == len(holders):
                    holders.append([token_id])
                else:
                    holders[found].append(token_id)
        self._gram_ids = gram_ids
        self._holders = _Postings(holders)
        team_lists: dict[str, list[int]] = {}
        for position, team in enumerate(teams):
            team_lists.setdefault(team, []).append(position)
        self._teams = {team: np.array(found, np.int32) for team, found in team_lists.items()}
        self._none: Positions = np.zeros(0, np.int32)

    def find(self, search: str | None, team: str | None = None) -> Positions:
        """The positions whose text holds every word of ``search`` (case-insensitively),
        and whose team is ``team`` when given; ascending."""
        words = dict.fromkeys((search or "").lower().split())  # a repeated word narrows nothing
        if team is None and not words:
            return np.arange(self.size, dtype=np.int32)
        chosen = np.zeros(self.size, np.bool_)
        if team is None:
            chosen[:] = True
        else:
            chosen[self._teams.get(team, self._none)] = True
        for word in words:
            holding = np.zeros(self.size, np.bool_)
            holding[self._datasets.gather(self._tokens_holding(word))] = True
            np.logical_and(chosen, holding, out=chosen)
        return np.flatnonzero(chosen).astype(np.int32, copy=False)

    def _tokens_holding(self, word: str) -> Positions:
        """The ids of the tokens that ``word`` is a substring of, ascending."""
        if len(word) <= 3:
            return self._gram(word)
        pools = sorted((self._gram(word[i:i + 3]) for i in range(len(word) - 2)), key=len)
        candidates = pools[0]
        for pool in pools[1:]:
            if not len(candidates):
                break
            candidates = candidates[_member(candidates, pool)]
        tokens = self.tokens
        return np.array([t for t in candidates.tolist() if word in tokens[t]], np.int32)

    def _gram(self, gram: str) -> Positions:
        found = self._gram_ids.get(gram)
        return self._none if found is None else self._holders.at(found)


def _grams(token: str) -> set[str]:
    """Every substring of one to three characters of ``token``."""
    return {token[i:i + n] for n in (1, 2, 3) for i in range(len(token) - n + 1)}
