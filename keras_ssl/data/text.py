"""Text sources -> token id arrays and `tf.data` pipelines, for masked language modelling.

`load(source)` is the one entry point for text. It reads documents, cuts them into examples of at
most `sequence_length` words (whole sentences packed together, paragraphs of a document run on),
splits off held-out examples, adapts a `keras.layers.TextVectorization` on the training text only,
and returns a `TextData`: the examples as strings and as int32 token ids `[N, L]`, and the adapted
vectorizer (which a `MaskedLanguageModel` keeps, so that the exported SavedModel takes raw strings).

Accepted sources:

- `"pydoc"`: the English help text that ships with Python (`pydoc_data.topics`, 79 topics, about
  65,000 words): offline, nothing to download.
- a `.txt` file (one document), or a folder of `.txt` files (searched recursively, one document
  each).
- a tensorflow-datasets text data set (`"imdb_reviews"`, ...) already prepared in `data_dir`; it
  reads the `text` feature (or the first text feature). Nothing is downloaded unless `download=True`.
- Python strings: `load(["first document", "second document", ...])`.

Token ids: 0 is padding, 1 out-of-vocabulary, 2 the `[mask]` token (which text can never produce:
standardisation strips the brackets), and words start at `FIRST_TOKEN_ID` = 3, most frequent first.

>>> from keras_ssl.data import text
>>> d = text.load("pydoc", vocab_size=5000, sequence_length=64)
>>> d.x_train.dtype, d.x_train.shape[1], d.vocab_size <= 5000
(dtype('int32'), 64, True)
>>> [str(token) for token in d.vectorizer.get_vocabulary()[:4]]
['', '[UNK]', '[mask]', 'the']
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.data.base import IMAGE_EXTENSIONS, SSLData
from keras_ssl.data.tfds import TFDS_NAME, prepared_builder
from keras_ssl.errors import KerasSSLError

__all__ = [
    "FIRST_TOKEN_ID",
    "MASK_TOKEN",
    "MASK_TOKEN_ID",
    "OOV_ID",
    "PAD_ID",
    "TextData",
    "is_text_source",
    "load",
    "make_vectorizer",
    "split_into_examples",
]

PAD_ID = 0
OOV_ID = 1
MASK_TOKEN = "[mask]"
MASK_TOKEN_ID = 2
FIRST_TOKEN_ID = 3
DEFAULT_VOCAB_SIZE = 5000
DEFAULT_SEQUENCE_LENGTH = 64
# Padding, OOV, [mask] and two words: below that, there is nothing to predict.
MIN_VOCAB_SIZE = 5
# Text with fewer distinct words than this is too repetitive for masked-token prediction.
MIN_DISTINCT_TOKENS = 10
# Examples with fewer tokens than this (a heading, a line of asterisks) carry no context.
MIN_EXAMPLE_TOKENS = 2

TEXT_SOURCES_HELP = (
    "Accepted text sources: 'pydoc' (Python's own help text, offline); a .txt file; a folder of "
    ".txt files; a tensorflow-datasets text data set such as 'imdb_reviews' already prepared in "
    "data_dir; a list of Python strings."
)

# A sentence ends at . ! or ? followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclasses.dataclass(repr=False)
class TextData(SSLData):
    """Training and held-out text as int32 token ids `[N, L]` (0-padded), with the strings they
    came from and the `keras.layers.TextVectorization` adapted on the training text.

    An `SSLData` of kind "text" without labels: `train_dataset(batch_size)`, `test_dataset()`,
    `input_shape` work as for images and vectors.
    """

    texts_train: list[str] = dataclasses.field(default_factory=list, kw_only=True)
    texts_test: list[str] | None = dataclasses.field(default=None, kw_only=True)
    vectorizer: keras.layers.TextVectorization | None = dataclasses.field(default=None,
                                                                          kw_only=True)
    kind: str = "text"

    mask_token_id = MASK_TOKEN_ID
    first_token_id = FIRST_TOKEN_ID

    def __post_init__(self):
        super().__post_init__()
        if self.vectorizer is None:
            raise KerasSSLError("TextData needs the adapted vectorizer; build it with text.load().")
        # Read once, eagerly: vocabulary_size() gives a symbolic tensor inside a tf.function.
        self._vocab_size = int(self.vectorizer.vocabulary_size())

    @property
    def sequence_length(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def vocab_size(self) -> int:
        """The number of token ids (padding, OOV and [mask] included)."""
        return self._vocab_size

    def __repr__(self) -> str:
        held_out = "None" if self.x_test is None else len(self.x_test)
        return (
            f"TextData(name={self.name!r}, train={len(self.x_train)}, held_out={held_out}, "
            f"sequence_length={self.sequence_length}, vocab_size={self.vocab_size})"
        )


# --------------------------------------------------------------------------------------------
# Documents -> examples -> ids
# --------------------------------------------------------------------------------------------


def split_into_examples(documents, max_words: int) -> list[str]:
    """Cut documents into examples of at most `max_words` white-space separated words.

    Whole sentences are packed into an example while they fit (paragraphs of one document run on,
    as BERT packs its training text); a sentence longer than `max_words` is cut. Examples never
    span two documents. Standardisation can only drop words (punctuation-only ones), so each
    example fits in `max_words` tokens.

    Example:
    >>> split_into_examples(["One two. Three four five.\\n\\nSix.", "Seven"], max_words=3)
    ['One two.', 'Three four five.', 'Six.', 'Seven']
    """
    examples = []
    for document in documents:
        buffer: list[str] = []
        for paragraph in _PARAGRAPH_BREAK.split(document):
            for sentence in _SENTENCE_END.split(paragraph):
                words = sentence.split()
                if buffer and len(buffer) + len(words) > max_words:
                    examples.append(" ".join(buffer))
                    buffer = []
                while len(words) > max_words:
                    examples.append(" ".join(words[:max_words]))
                    words = words[max_words:]
                buffer += words
        if buffer:
            examples.append(" ".join(buffer))
    return examples


def make_vectorizer(
    texts, vocab_size: int = DEFAULT_VOCAB_SIZE, sequence_length: int = DEFAULT_SEQUENCE_LENGTH
) -> keras.layers.TextVectorization:
    """A `TextVectorization` adapted on `texts`, with `[mask]` added as id 2.

    The vocabulary holds padding (0), OOV (1), `[mask]` (2) and the `vocab_size - 3` most
    frequent words of `texts` (lower-cased, punctuation stripped). Sequences are padded or cut to
    `sequence_length` ids.

    Example:
    >>> v = make_vectorizer(["a a a b b c d e f g h i j k"], vocab_size=8, sequence_length=4)
    >>> [str(t) for t in v.get_vocabulary()], v(["B, a zebra"]).numpy().tolist()
    (['', '[UNK]', '[mask]', 'a', 'b', 'k', 'j', 'i'], [[4, 3, 1, 0]])
    """
    for name, value, least in (
        ("vocab_size", vocab_size, MIN_VOCAB_SIZE),
        ("sequence_length", sequence_length, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise KerasSSLError(
                f"{name} must be an integer of at least {least}, got {value!r}"
                + (
                    " (ids 0-2 are padding, out-of-vocabulary and [mask]; a few thousand words "
                    "is usual)." if name == "vocab_size" else "."
                )
            )
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise KerasSSLError("The text is empty: there is nothing to build a vocabulary from.")
    # Adapt with one id to spare for [mask]: TextVectorization counts padding and OOV in max_tokens.
    counter = keras.layers.TextVectorization(max_tokens=int(vocab_size) - 1)
    counter.adapt(tf.constant(texts))
    words = [str(w) for w in counter.get_vocabulary()[2:]]
    if len(words) < min(MIN_DISTINCT_TOKENS, int(vocab_size) - FIRST_TOKEN_ID):
        raise KerasSSLError(
            f"The text has only {len(words)} distinct word(s) ({', '.join(words[:9]) or 'none'}); "
            f"masked-token prediction needs at least {MIN_DISTINCT_TOKENS}. Give more (or more "
            "varied) text."
        )
    return keras.layers.TextVectorization(
        output_sequence_length=int(sequence_length),
        vocabulary=[MASK_TOKEN, *words],
        name="text_vectorization",
    )


def vectorize(vectorizer, texts, batch_size: int = 4096) -> np.ndarray:
    """Token ids int32 `[N, L]` of a list of strings."""
    chunks = [
        vectorizer(tf.constant(texts[i : i + batch_size])).numpy().astype(np.int32)
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(chunks)


# --------------------------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------------------------


def load(
    source="pydoc",
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_examples: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    vectorizer: keras.layers.TextVectorization | None = None,
) -> TextData:
    """Load a text source into a `TextData` (see the module docstring for the accepted sources).

    Args:
        source: `"pydoc"`, a `.txt` file, a folder of `.txt` files, a tensorflow-datasets name, or
            a list of strings (one document each).
        vocab_size: the most token ids, padding, OOV and `[mask]` included (the vocabulary is
            smaller when the text has fewer distinct words).
        sequence_length: ids per example; examples hold at most this many words.
        test_fraction: share of the examples held out (a random subset), unless the source has
            a held-out split of its own (tfds "test" or "validation"). 0 holds out nothing.
        seed: seeds the held-out split and `max_examples` subsets.
        max_examples: keep at most this many training examples (a random subset); the held-out
            split shrinks in proportion.
        data_dir: tensorflow-datasets data directory.
        download: for tfds names only: download and prepare the data set if it is not prepared.
        vectorizer: an already adapted `TextVectorization` to reuse (e.g. a trained model's),
            instead of adapting a new one on the training text.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0 <= test_fraction < 1
    ):
        raise KerasSSLError(
            f"test_fraction must be a number in [0, 1) (e.g. 0.1), got {test_fraction!r}."
        )
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, (int, np.integer))
        or max_examples < 1
    ):
        raise KerasSSLError(f"max_examples must be a positive integer or None, got {max_examples!r}.")
    if vectorizer is not None:
        sequence_length = vectorizer.get_config().get("output_sequence_length")
        if not sequence_length:
            raise KerasSSLError(
                "The vectorizer must pad to a fixed length: build it with output_sequence_length."
            )
    elif isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)) \
            or sequence_length < 2:
        raise KerasSSLError(f"sequence_length must be an integer of at least 2, got {sequence_length!r}.")
    name, documents, held_out_documents = _read_source(
        source, data_dir=data_dir, download=download, test_fraction=test_fraction,
        max_examples=max_examples,
    )
    examples = split_into_examples(documents, int(sequence_length))
    if not examples:
        raise KerasSSLError(
            f"{name}: the text is empty (no words in it). Give a source with some text. "
            f"{TEXT_SOURCES_HELP}"
        )
    rng = np.random.default_rng(seed)
    if held_out_documents is not None:
        train = examples
        test = split_into_examples(held_out_documents, int(sequence_length))
    else:
        order = rng.permutation(len(examples))
        n_test = math.ceil(len(examples) * test_fraction) if test_fraction else 0
        if n_test and len(examples) - n_test < 1:
            raise KerasSSLError(
                f"{name}: {len(examples)} example(s) are too few to hold out "
                f"test_fraction={test_fraction}; give more text or pass test_fraction=0."
            )
        train = [examples[i] for i in np.sort(order[n_test:])]
        test = [examples[i] for i in np.sort(order[:n_test])]
    if max_examples is not None and len(train) > max_examples:
        keep = np.sort(rng.permutation(len(train))[:max_examples])
        train = [train[i] for i in keep]
        n_test = max(1, math.ceil(max_examples * test_fraction / (1 - test_fraction)))
        if len(test) > n_test:
            test = [test[i] for i in np.sort(rng.permutation(len(test))[:n_test])]
    if vectorizer is None:
        vectorizer = make_vectorizer(train, vocab_size, int(sequence_length))
    texts_train, x_train = _vectorize_examples(vectorizer, train)
    if not texts_train:
        raise KerasSSLError(
            f"{name}: no example has {MIN_EXAMPLE_TOKENS} or more words after standardisation "
            "(lower-casing, stripping punctuation); give a source with some prose."
        )
    texts_test, x_test = _vectorize_examples(vectorizer, test) if test else ([], None)
    return TextData(x_train, x_test=x_test if texts_test else None, name=name,
                    texts_train=texts_train, texts_test=texts_test or None, vectorizer=vectorizer)


def _vectorize_examples(vectorizer, texts):
    """(kept texts, ids) with examples of fewer than MIN_EXAMPLE_TOKENS tokens dropped."""
    if not texts:
        return [], None
    ids = vectorize(vectorizer, texts)
    keep = (ids != PAD_ID).sum(axis=1) >= MIN_EXAMPLE_TOKENS
    return [t for t, k in zip(texts, keep, strict=True) if k], ids[keep]


def is_text_source(source) -> bool:
    """Whether `source` names text on sight: "pydoc", a `.txt` file, or a folder of only text.

    Cheap (no tensorflow-datasets look-up): lets callers point image or vector methods that are
    given text at a text method before loading anything.
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    name = os.fspath(source)
    if name == "pydoc":
        return True
    path = Path(name).expanduser()
    if path.is_file():
        return path.suffix.lower() == ".txt"
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.rglob("*") if p.is_file()}
        return ".txt" in suffixes and not suffixes & set(IMAGE_EXTENSIONS)
    return False


def _pydoc_documents() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def _read_text_file(path: Path) -> str:
    """The file's text: UTF-8, or Latin-1 (every byte a character) with a warning when it is not
    UTF-8, so nothing is replaced silently."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KerasSSLError(f"Could not read the text file {path}: {e.strerror}.") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        warnings.warn(
            f"{path} is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}); reading it as "
            "Latin-1. Convert it to UTF-8 (iconv -f LATIN1 -t UTF-8) if that is wrong.",
            stacklevel=2,
        )
        return raw.decode("latin-1")


def _read_source(source, *, data_dir, download, test_fraction, max_examples):
    """(name, training documents, held-out documents or None) of any accepted source."""
    if isinstance(source, (list, tuple)):
        if not all(isinstance(t, str) for t in source):
            raise KerasSSLError(
                "A list source must hold strings (one document each); got "
                f"{sorted({type(t).__name__ for t in source})}."
            )
        return "strings", list(source), None
    if not isinstance(source, (str, os.PathLike)):
        raise KerasSSLError(
            f"Cannot read text from a {type(source).__name__}. {TEXT_SOURCES_HELP}"
        )
    text = os.fspath(source)
    if not text.strip():
        raise KerasSSLError(f"The text source is an empty string. {TEXT_SOURCES_HELP}")
    if text == "pydoc":
        return "pydoc", _pydoc_documents(), None
    if text in ("digits", "digits_vectors"):
        raise KerasSSLError(
            f"{text!r} holds {'images' if text == 'digits' else 'vectors'}, not text. "
            f"{TEXT_SOURCES_HELP}"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() == ".txt"
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise KerasSSLError(
                f"No .txt files in the folder {path}. Put the text in <folder>/<name>.txt files "
                f"(any depth). {TEXT_SOURCES_HELP}"
            )
        return path.resolve().name or str(path), [_read_text_file(p) for p in files], None
    if path.exists():
        if path.suffix.lower() != ".txt":
            raise KerasSSLError(
                f"{text!r} is not a .txt file"
                + (
                    " (.npz/.npy files hold images or vectors, not text)"
                    if path.suffix.lower() in (".npz", ".npy") else ""
                )
                + f". {TEXT_SOURCES_HELP}"
            )
        return path.name, [_read_text_file(path)], None
    if TFDS_NAME.fullmatch(text):
        return _read_tfds(text, data_dir=data_dir, download=download,
                          test_fraction=test_fraction, max_examples=max_examples)
    raise KerasSSLError(f"No such file or folder: {text!r}. {TEXT_SOURCES_HELP}")


def _read_tfds(name, *, data_dir, download, test_fraction, max_examples):
    import tensorflow_datasets as tfds

    builder = prepared_builder(
        name, data_dir=data_dir, download=download, sources_help=TEXT_SOURCES_HELP
    )
    features = builder.info.features
    names = list(features.keys()) if hasattr(features, "keys") else []
    text_features = [k for k in names if isinstance(features[k], tfds.features.Text)]
    key = "text" if "text" in names else (text_features[0] if text_features else None)
    if key is None:
        raise KerasSSLError(
            f"{name!r} has no text feature (features: {names}). For images use keras_ssl.data.load "
            "and an image method such as simclr."
        )
    splits = dict(builder.info.splits)
    if splits and "train" not in splits:
        raise KerasSSLError(f"{name!r} has no 'train' split (splits: {sorted(splits)}).")
    held_out = "test" if not splits or "test" in splits else (
        "validation" if "validation" in splits else None
    )

    def read(split, limit):
        try:
            ds = builder.as_dataset(split=split, shuffle_files=False)
        except Exception as e:
            raise KerasSSLError(f"Could not read split {split!r} of {name!r}: {e}") from e
        ds = ds.map(lambda example: example[key])
        if limit is not None:
            ds = ds.take(limit)
        return [t.decode("utf-8", errors="replace") for t in ds.as_numpy_iterator()]

    # Each document gives one or more examples: max_examples documents are enough.
    documents = read("train", max_examples)
    if held_out is None or not test_fraction:
        return name, documents, None
    limit = max(1, math.ceil(len(documents) * test_fraction / (1 - test_fraction)))
    return name, documents, read(held_out, limit)
