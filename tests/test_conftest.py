from pathlib import Path
from types import SimpleNamespace

from tests.conftest import LONGEST_FIRST, longest_first

ROOT = Path(__file__).resolve().parent.parent


def test_the_longest_modules_are_real_paths():
    """A module renamed or moved must not drop out of the order silently."""
    assert all((ROOT / path).is_file() for path in LONGEST_FIRST)


def test_the_longest_modules_go_first_and_the_rest_keep_their_order():
    ids = ["tests/test_plan.py::a", "tests/e2e/test_dumps.py::x", "tests/test_cli.py::b",
           "tests/e2e/test_rollback.py::y", "tests/test_plan.py::c", "tests/e2e/test_rollback.py::z"]
    items = sorted((SimpleNamespace(nodeid=i) for i in ids), key=longest_first)
    assert [i.nodeid for i in items] == ["tests/e2e/test_rollback.py::y", "tests/e2e/test_rollback.py::z",
                                         "tests/e2e/test_dumps.py::x", "tests/test_plan.py::a", "tests/test_cli.py::b",
                                         "tests/test_plan.py::c"]
