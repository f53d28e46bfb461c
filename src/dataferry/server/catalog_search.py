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
_SORTED_SHARE = 16
"""Positions fewer than 1/16 of the catalog are sorted or binary-searched; more are
marked in an array of flags the size of the catalog."""


class _Postings:
    """Sorted lists of integers by key (0, 1, ...), packed in one array; no list is
    empty (a token is in some dataset, a substring in some token)."""

    def __init__(self, lists: Sequence[list[int]]) -> None:
        lengths = np.fromiter((len(values) for values in lists), np.int64, len(lists))
        self.offsets = np.zeros(len(lists) + 1, np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.values: Positions = np.fromiter(chain.from_iterable(lists), np.int32,
                                             int(self.offsets[-1]))

    def at(self, key: int) -> Positions:
        return self.values[self.offsets[key]:self.offsets[key + 1]]

    def gather(self, keys: Positions) -> Positions:
        """The values of every key in ``keys``, concatenated (not sorted, not unique)."""
        if len(keys) <= _LOOPED:
            return np.concatenate([self.values[:0], *(self.at(key) for key in keys.tolist())])
        starts = self.offsets[keys]
        lengths = self.offsets[keys + 1] - starts
        total = int(lengths.sum())
        if total == len(keys):  # one value each, as for the tokens of refs
            single: Positions = self.values[starts]
            return single
        # the indexes of the wanted values: +1 within a key's slice, a jump between two
        steps = np.ones(total, np.int64)
        firsts = np.cumsum(lengths[:-1])
        steps[0] = starts[0]
        steps[firsts] = starts[1:] - (starts[:-1] + lengths[:-1]) + 1
        gathered: Positions = self.values[np.cumsum(steps)]
        return gathered


def _member(values: Positions, sorted_pool: Positions) -> npt.NDArray[np.bool_]:
    """For each of ``values``, whether ``sorted_pool`` holds it."""
    if not len(sorted_pool):
        return np.zeros(len(values), np.bool_)
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
        self._everything: Positions = np.arange(self.size, dtype=np.int32)
        for shared in (self._datasets.values, self._holders.values, self._none,
                       self._everything, *self._teams.values()):
            shared.flags.writeable = False  # handed out as they are

    def find(self, search: str | None, team: str | None = None) -> Positions:
        """The positions whose text holds every word of ``search`` (case-insensitively),
        and whose team is ``team`` when given; ascending. Read-only: it may be a view of
        the index itself."""
        found: list[Positions] = []
        for word in dict.fromkeys((search or "").lower().split()):  # repeats narrow nothing
            found.append(self._datasets_holding(word))
            if not len(found[-1]):
                return found[-1]
        if team is not None:
            found.append(self._teams.get(team, self._none))
        if not found:
            return self._everything
        found.sort(key=len)
        chosen = found[0]
        for other in found[1:]:
            if not len(chosen):
                break
            chosen = self._intersect(chosen, other)
        return chosen

    def _datasets_holding(self, word: str) -> Positions:
        """The positions of the datasets whose text holds ``word``, ascending."""
        tokens = self._tokens_holding(word)
        if not len(tokens):
            return self._none
        if len(tokens) == 1:
            return self._datasets.at(int(tokens[0]))
        gathered = self._datasets.gather(tokens)
        if (gathered[1:] > gathered[:-1]).all():  # e.g. refs' tokens: ids in catalog order
            return gathered
        if len(gathered) * _SORTED_SHARE < self.size:
            gathered.sort()
            return gathered[np.concatenate(([True], gathered[1:] != gathered[:-1]))]
        chosen = np.zeros(self.size, np.bool_)
        chosen[gathered] = True
        return np.flatnonzero(chosen).astype(np.int32)

    def _intersect(self, fewer: Positions, more: Positions) -> Positions:
        """The positions in both (ascending arrays; ``fewer`` the shorter)."""
        if len(fewer) * _SORTED_SHARE < len(more):  # a binary search each
            return fewer[_member(fewer, more)]
        holding = np.zeros(self.size, np.bool_)
        holding[more] = True
        return fewer[holding[fewer]]

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
