"""Adding a method is one file plus its registration: forgetting either fails here."""

import inspect
import pkgutil
import subprocess
import sys

import keras_ssl
from keras_ssl import methods
from keras_ssl.methods import METHODS, SelfSupervisedModel

FRAMEWORK = {"keras_ssl.methods.base", "keras_ssl.methods.registry"}


def _method_modules():
    return {info.name for info in pkgutil.iter_modules(methods.__path__, "keras_ssl.methods.")
            if not info.name.rsplit(".", 1)[1].startswith("_")} - FRAMEWORK


def test_every_method_module_is_imported_by_the_package():
    code = ("import sys, keras_ssl; print(' '.join(sorted(m for m in sys.modules "
            "if m.startswith('keras_ssl.methods.'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    missing = _method_modules() - loaded
    assert not missing, f"import these in keras_ssl/methods/__init__.py: {sorted(missing)}"


def test_every_method_class_is_registered_and_public():
    registered = {cls for cls, _ in METHODS.values()}
    for name in _method_modules():
        module = sys.modules[name]
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, SelfSupervisedModel) and cls.__module__ == name
                    and not cls.__name__.startswith("_")):
                assert cls in registered, f"{cls.__name__} has no @register_method"
                assert getattr(keras_ssl, cls.__name__) is cls, (
                    f"export {cls.__name__} from keras_ssl/__init__.py")
