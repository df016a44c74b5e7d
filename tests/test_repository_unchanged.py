"""Runs after every other test (conftest.py orders it last): no test or benchmark wrote into the checkout.

Regression: tests/test_bench.py ran the CLI with cwd=REPO, so Lightning's config saver wrote a
``config.yaml`` into the repository root, which then got committed.
"""

from __future__ import annotations

import pytest

from conftest import repository_files


def test_the_suite_left_the_checkout_as_it_found_it(repository_before):
    if repository_before is None:
        pytest.skip("not a git checkout")
    now = repository_files()
    assert sorted(now - repository_before) == [] and sorted(repository_before - now) == []
