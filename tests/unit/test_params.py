import pytest
import yaml

from aiconf.errors import ConfigError
from aiconf.params import load_defaults, load_parameters, parameters_dir


@pytest.fixture
def pdir(tmp_path):
    (tmp_path / "default.yaml").write_text("a_int: 1\nb_str: x\nc_bool: false\nd_float: 1.5\nsecret_token: ''\n")
    (tmp_path / "base.yaml").write_text("a_int: 2\n")
    (tmp_path / "child.yaml").write_text("extends: base\nb_str: y\n")
    (tmp_path / "loop.yaml").write_text("extends: loop\n")
    (tmp_path / "bad.yaml").write_text("nope: 1\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    return tmp_path


def test_profile_chain_and_overrides_merge_in_order(pdir):
    p = load_parameters("child", ["a_int=5", "d_float=2"], directory=pdir)
    assert (p.a_int, p.b_str, p.c_bool, p.d_float) == (5, "y", False, 2.0)
    assert p.source("a_int") == "--set" and p.source("b_str").endswith("child.yaml")


@pytest.mark.parametrize(
    "profile, sets, message",
    [
        ("bad", [], "unknown parameter 'nope' in .*bad.yaml"),
        ("missing", [], "unknown profile 'missing'"),
        ("loop", [], "extends itself"),
        ("list", [], "must hold a mapping"),
        (None, ["a_int=abc"], "parameter 'a_int' in --set must be an integer, got 'abc'"),
        (None, ["c_bool=maybe"], "must be a boolean"),
        (None, ["zzz=1"], "unknown parameter 'zzz'"),
        (None, ["novalue"], "--set expects key=value"),
    ],
)
def test_bad_input_names_key_and_source(pdir, profile, sets, message):
    with pytest.raises(ConfigError, match=message):
        load_parameters(profile, sets, directory=pdir)


def test_secrets_are_redacted(pdir):
    p = load_parameters(None, ["secret_token=abc"], directory=pdir)
    assert p.redacted()["secret_token"] == "<redacted>"


def test_every_shipped_profile_loads():
    for path in sorted(parameters_dir().glob("*.yaml")):
        load_parameters(path)


def test_every_default_parameter_has_a_comment():
    lines = (parameters_dir() / "default.yaml").read_text().splitlines()
    keys = set(load_defaults())
    for line in lines:
        if line and not line.startswith((" ", "#")) and ":" in line:
            key = line.split(":", 1)[0]
            assert key in keys
            assert "#" in line, f"parameter {key} has no comment"
    assert yaml.safe_load((parameters_dir() / "default.yaml").read_text()) == load_defaults()
