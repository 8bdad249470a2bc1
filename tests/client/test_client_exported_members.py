"""The public surface of inferline.client is the list in __all__, chosen on purpose (httpx's test)."""

from __future__ import annotations

import inferline.client


def test_all_matches_the_exports() -> None:
    exported = {name for name in dir(inferline.client) if not name.startswith("_")}
    assert sorted(inferline.client.__all__) == sorted(exported)


def test_public_names_report_the_public_module() -> None:
    for name in inferline.client.__all__:
        obj = getattr(inferline.client, name)
        if isinstance(obj, type):
            assert obj.__module__ == "inferline.client", name
