"""The vocabulary study (``utils.studies.vocabulary``): how a setting on the command line becomes the
arguments of ``preprocess``, and a bad setting stops the command before anything is built."""
from __future__ import annotations

import pytest

from utils.studies.vocabulary import DEFAULT_SETTINGS, main, parse_setting


def test_each_setting_names_a_vocabulary() -> None:
    assert parse_setting("word") == {"vocabulary": "word"}
    assert parse_setting("bpe:4000") == {"vocabulary": "bpe", "bpe_size": 4000, "bpe_shared": True}
    assert parse_setting("bpe:4000:unshared") == {"vocabulary": "bpe", "bpe_size": 4000, "bpe_shared": False}
    assert [parse_setting(s)["vocabulary"] for s in DEFAULT_SETTINGS] == ["word", "bpe", "bpe", "bpe", "bpe"]


@pytest.mark.parametrize("text", ["bpe", "bpe:many", "bpe:4000:shared", "chars", "word:10"])
def test_an_unknown_setting_is_a_value_error(text) -> None:
    with pytest.raises(ValueError, match=f"Unknown setting {text!r}"):
        parse_setting(text)


def test_the_command_stops_on_a_bad_setting_before_building_anything(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--settings", "word", "bpe:many", "--out", str(tmp_path / "out"), "--csv", str(tmp_path / "v.csv")])
    assert exit_info.value.code == 2
    assert "Unknown setting 'bpe:many'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "v.csv").exists()
