"""Method names as the CLI and configs know them, mapped to classes and their preset arguments.

A method module registers itself with `@register_method("name", **preset_kwargs)`; one class can
stand behind several names (the autoencoder is also `denoising` and `masked`).
"""

from __future__ import annotations

import difflib

from keras_ssl.errors import KerasSSLError

METHODS: dict[str, tuple[type, dict]] = {}


def register_method(name: str, **preset):
    def decorate(cls):
        METHODS[name] = (cls, preset)
        return cls

    return decorate


def get_method(name: str) -> tuple[type, dict]:
    """The (class, preset kwargs) registered under `name`; a clear error for unknown names."""
    key = name.lower()
    if key not in METHODS:
        close = difflib.get_close_matches(key, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KerasSSLError(
            f"Unknown method {name!r}.{hint} Choose one of: {', '.join(sorted(METHODS))}."
        )
    return METHODS[key]
