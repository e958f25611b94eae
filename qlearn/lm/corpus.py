"""The corpus: docstrings of Python's standard library, split three ways, and a character tokenizer.

The text is a fixed extract committed with the package (``qlearn/lm/data/stdlib_docstrings.txt.gz``,
about 0.86 M characters): the module, class, function and method docstrings of 122 modules of the
CPython 3.11.7 standard library, reduced to printable ASCII plus newline. The docstrings are part of
Python and are distributed under the Python Software Foundation License (PSF-2.0). Committing the extract,
rather than reading the docstrings of whatever Python runs, keeps the data identical on every Python
version; ``qlearn/lm/data/extract_corpus.py`` is the script that made it.

The text is cut into paragraphs (blocks separated by a blank line). Paragraph ``i`` goes to the validation
split when ``i % 20 == 18``, to the test split when ``i % 20 == 19`` and to the training split otherwise,
so the three splits share one distribution (every module contributes to each) and no paragraph is in two.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["CharTokenizer", "Corpus", "load_corpus"]

_CORPUS_FILE = "stdlib_docstrings.txt.gz"
SPLITS = ("train", "valid", "test")


class CharTokenizer:
    """Characters to integer ids and back: newline is 0, the printable ASCII ``' '..'~'`` are 1..95.

    The vocabulary is fixed (it does not depend on the text), so ids mean the same thing everywhere.
    A character outside it raises ``ValueError``.

    Parameters
    ----------
    None
        The vocabulary is fixed; the constructor takes no arguments.

    Notes
    -----
    ``id('\\n') = 0`` and ``id(c) = ord(c) - 31`` for ``32 <= ord(c) <= 126``; ``vocab_size = 96``.

    Examples
    --------
    >>> tok = CharTokenizer()
    >>> tok.encode("Hi!\\n").tolist()
    [41, 74, 2, 0]
    >>> tok.decode([41, 74, 2, 0])
    'Hi!\\n'
    """

    vocab_size: int = 96

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> NDArray[np.int32]:
        """Return the ids of the characters of ``text`` as an int32 array.

        Parameters
        ----------
        text : str
            Newline and printable ASCII only.

        Returns
        -------
        numpy.ndarray
            int32 ids, one per character, each in ``[0, 95]``.

        Raises
        ------
        TypeError
            If ``text`` is not a string.
        ValueError
            If ``text`` holds a character outside the vocabulary.

        Examples
        --------
        >>> CharTokenizer().encode("a b").tolist()
        [66, 1, 67]
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        bad = ~(((codes >= 32) & (codes <= 126)) | (codes == 10))
        if bad.any():
            c = text[int(np.argmax(bad))]
            raise ValueError(f"text may hold only newline and printable ASCII (' '..'~'); got {c!r}")
        return np.where(codes == 10, 0, codes - 31).astype(np.int32)

    def decode(self, ids: ArrayLike) -> str:
        """Return the text whose ids are ``ids``.

        Parameters
        ----------
        ids : array_like of int
            Ids in ``[0, 95]``, any shape (read in C order).

        Returns
        -------
        str
            The characters.

        Raises
        ------
        TypeError
            If ``ids`` is not an integer array.
        ValueError
            If an id is outside ``[0, 95]``.

        Examples
        --------
        >>> CharTokenizer().decode([66, 1, 67])
        'a b'
        """
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers; got dtype {arr.dtype}")
        flat = arr.reshape(-1).astype(np.int64)
        if flat.min() < 0 or flat.max() >= self.vocab_size:
            raise ValueError(f"ids must lie in [0, {self.vocab_size - 1}]; got values in [{flat.min()}, {flat.max()}]")
        return "".join("\n" if i == 0 else chr(i + 31) for i in flat.tolist())


@dataclass(frozen=True)
class Corpus:
    """The three splits of the corpus as token arrays, with their tokenizer (build it with :func:`load_corpus`).

    Parameters
    ----------
    train, valid, test : numpy.ndarray
        int32 token ids of each split (read-only).
    tokenizer : CharTokenizer
        Maps text to ids and back.
    source : str
        Where the text comes from and under which licence.

    Examples
    --------
    >>> c = load_corpus()
    >>> c.split("valid").dtype
    dtype('int32')
    """

    train: NDArray[np.int32]
    valid: NDArray[np.int32]
    test: NDArray[np.int32]
    tokenizer: CharTokenizer
    source: str

    def split(self, name: str) -> NDArray[np.int32]:
        """Return the token ids of split ``name``.

        Parameters
        ----------
        name : {"train", "valid", "test"}
            Which split.

        Returns
        -------
        numpy.ndarray
            Read-only int32 ids.

        Raises
        ------
        ValueError
            If ``name`` is not one of the three splits.

        Examples
        --------
        >>> load_corpus().split("test").ndim
        1
        """
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {name!r}")
        arr: NDArray[np.int32] = getattr(self, name)
        return arr


def _read_text() -> str:
    raw = resources.files("qlearn.lm").joinpath("data", _CORPUS_FILE).read_bytes()
    return gzip.decompress(raw).decode("ascii")


def _frozen(a: NDArray[Any]) -> NDArray[np.int32]:
    a = a.astype(np.int32)
    a.flags.writeable = False
    return a


@functools.cache
def load_corpus() -> Corpus:
    """Load the committed corpus and split it into train, validation and test token arrays.

    Parameters
    ----------
    None
        It takes no arguments.

    Returns
    -------
    Corpus
        The splits (read-only int32 arrays), the tokenizer and the source line.

    Notes
    -----
    Paragraph ``i`` (blocks separated by ``"\\n\\n"``) goes to ``valid`` if ``i % 20 == 18``, to ``test``
    if ``i % 20 == 19``, else to ``train``; each split is its paragraphs joined by ``"\\n\\n"``.
    The result is cached: every call returns the same object.

    Examples
    --------
    >>> c = load_corpus()
    >>> len(c.train) > 10 * len(c.valid) > 0
    True
    >>> c.tokenizer.decode(c.train[:5])
    '# abc'
    """
    text = _read_text()
    paragraphs = text.split("\n\n")
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i, p in enumerate(paragraphs):
        parts["valid" if i % 20 == 18 else "test" if i % 20 == 19 else "train"].append(p)
    tok = CharTokenizer()
    ids = {s: _frozen(tok.encode("\n\n".join(parts[s]))) for s in SPLITS}
    source = (
        "docstrings of 122 modules of the CPython 3.11.7 standard library (Python Software Foundation License, PSF-2.0)"
    )
    return Corpus(ids["train"], ids["valid"], ids["test"], tok, source)
