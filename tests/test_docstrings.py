"""Every `>>>` example in keras_ssl's docstrings runs, one test per module.

The examples run on the keras_ssl that the tests import (the installed package in CI), in a
temporary working directory, so files they write (exports, checkpoints) go nowhere else.
"""

import doctest
import importlib
import pkgutil

import pytest

import keras_ssl

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(keras_ssl.__path__, prefix="keras_ssl.")
    if not info.name.endswith("__main__")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_every_module_is_found():
    assert {"keras_ssl.pipeline", "keras_ssl.losses.contrastive", "keras_ssl.data.base"} <= set(
        MODULES)


# Every module's examples run in the default suite; the methods' train a tiny model each (about
# 55 s in all on 2 cores).
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    output = []
    for test in finder.find(module, name, globs={"keras_ssl": keras_ssl, **vars(module)}):
        runner.run(test, out=output.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(output)
