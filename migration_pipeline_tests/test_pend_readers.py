"""Pend's readers: one member or element at a time, every number exact (never a float), a bad record
quarantined alone."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from migration_pipeline.sources.json_count import count_items
from migration_pipeline.stores.pend.readers import read_array, read_users


def _walk(value: object) -> list[object]:
    out = [value]
    if isinstance(value, dict):
        for v in value.values():
            out += _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            out += _walk(v)
    return out


def test_users_are_streamed_member_by_member_and_a_bad_one_is_quarantined_alone(tmp_path: Path) -> None:
    path = tmp_path / "wallet-db.json"
    path.write_bytes(b'\xef\xbb\xbf {"users" : {"0xA": {"amount": 1.50, "n": 1e2, "big": 123456789012345678901234567890},'
                     b' "0xB": {"amount": NaN}, "0xC": {"s": "\xff"}, "0xD": {"amount": 0.1}} }\n')
    items = list(read_users(path))
    assert [(i.locator, i.reason) for i in items] == [
        ("users[0]", None), ("users[1]", "invalid_json"), ("users[2]", "invalid_json"), ("users[3]", None)]
    assert items[0].value == ("0xA", {"amount": Decimal("1.50"), "n": Decimal("1E+2"),
                                      "big": 123456789012345678901234567890})
    assert str(items[0].value[1]["amount"]) == "1.50"  # the digits as written
    assert items[3].value == ("0xD", {"amount": Decimal("0.1")})
    assert not any(isinstance(v, float) for i in items for v in _walk(i.value))
    assert items[1].message == "NaN is not JSON" and "\xff" not in items[2].message


def test_a_users_object_among_other_keys_is_read_whole_and_an_unclosed_one_says_so(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"version": 2, "users": {"0xA": {"amount": "5"}}}')
    assert [(i.locator, i.value) for i in read_users(other)] == [("users[0]", ("0xA", {"amount": "5"}))]
    cut = tmp_path / "cut.json"
    cut.write_text('{"users": {"0xA": {"amount": "5"}, "0xB": {"amo')
    assert [(i.locator, i.reason) for i in read_users(cut)] == [("users[0]", "invalid_json")]


def test_array_items_are_exact_and_counted_alike(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    path.write_text('[{"value": "340282366920938463463374607431768211456", "x": 0.30000000000000004}, 7, , {"v": Infinity}]')
    items = list(read_array(path))
    assert [(i.locator, i.reason) for i in items] == [("[0]", None), ("[1]", None), ("[2]", "invalid_json"),
                                                      ("[3]", "invalid_json")]
    assert items[0].value["x"] == Decimal("0.30000000000000004")
    assert count_items(path) == len(items)
