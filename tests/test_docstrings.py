"""What ``help()`` shows: every public object of the package documents itself, its
signature shows defaults as the docs write them, the examples in the native
docstrings run, and ``__version__`` is the crates' version."""

from __future__ import annotations

import doctest
import importlib.metadata
import inspect
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT

import shmbridge
import shmbridge._native

# Dunders a user calls through syntax, whose help() should say what the syntax does
# (slots such as __len__ carry CPython's own text, whatever the extension says).
DOCUMENTED_DUNDERS = {"__enter__", "__exit__", "__dlpack__", "__reduce__"}


def public_objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) for every name in ``shmbridge.__all__`` and the
    public attributes of its classes."""
    for name in shmbridge.__all__:
        obj = getattr(shmbridge, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        yield name, obj
        if isinstance(obj, type):
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr not in DOCUMENTED_DUNDERS:
                    continue
                yield f"{name}.{attr}", getattr(obj, attr, value) if not isinstance(value, property) else value


def own_doc(obj: Any) -> str:
    doc = obj.__func__.__doc__ if isinstance(obj, (classmethod, staticmethod)) else obj.__doc__
    return inspect.cleandoc(doc or "")


@pytest.mark.parametrize(("name", "obj"), list(public_objects()), ids=[n for n, _ in public_objects()])
def test_public_object_has_a_docstring(name: str, obj: Any) -> None:
    doc = own_doc(obj)
    # PyO3 and CPython fill in generic text ("Return len(self).") when there is none.
    assert doc and not doc.startswith(("Return len(self)", "Create and return a new object")), name


@pytest.mark.parametrize(
    "obj",
    [shmbridge.SharedMemory, shmbridge.SharedMemory.create, shmbridge.SharedArray.create, shmbridge.create_array],
    ids=["SharedMemory", "SharedMemory.create", "SharedArray.create", "create_array"],
)
def test_signatures_show_mode_in_octal(obj: Any) -> None:
    signature = str(inspect.signature(obj))
    assert "mode=0o600" in signature or "mode: 'int' = 0o600" in signature, signature


def test_help_shows_the_class_docs_and_octal_mode() -> None:
    import pydoc

    text = pydoc.render_doc(shmbridge.SharedMemory, renderer=pydoc.plaintext)
    assert "mode=0o600" in text and "mode=384" not in text
    assert "A named shared-memory segment" in text and "SIGBUS" in text


def native_docstrings() -> Iterator[tuple[str, str]]:
    for name, obj in public_objects():
        if hasattr(shmbridge._native, name.split(".")[0]) and ">>>" in own_doc(obj):
            yield name, own_doc(obj)


@pytest.mark.parametrize(("name", "doc"), list(native_docstrings()), ids=[n for n, _ in native_docstrings()])
def test_native_docstring_examples_run(name: str, doc: str) -> None:
    """pytest --doctest-modules reads .py files only; the extension's examples run here."""
    test = doctest.DocTestParser().get_doctest(doc, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


def test_version_is_the_crates_version() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert shmbridge.__version__ == cargo["workspace"]["package"]["version"]
    assert shmbridge.__version__ == importlib.metadata.version("shmbridge")
