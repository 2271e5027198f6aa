"""The test suite. Its folders mirror the package: the tests of `gim_ppl/core/hill.py` are
`tests/core/test_hill.py`, those of `gim_ppl/data.py` are `tests/test_data.py`. Every folder is
a package, so that two folders may hold modules of the same name and the tests import their
shared problems as `tests._problems`."""

from pathlib import Path

#: The repository root (the folder of pyproject.toml, README.md, docs/), wherever a test sits.
ROOT = Path(__file__).resolve().parent.parent
