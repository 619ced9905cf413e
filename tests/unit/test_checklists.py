import pytest

from aiconf import checklists
from aiconf.errors import ConfigError


def test_version_matrix_counts_match_the_program():
    cl = checklists.load()
    def count(version, level):
        return sum(1 for r in cl.for_version(version) if r.level(version) == level)
    assert (count("1.33", "MUST"), count("1.33", "SHOULD")) == (8, 1)
    assert (count("1.34", "MUST"), count("1.34", "SHOULD")) == (9, 0)
    assert (count("1.35", "MUST"), count("1.35", "SHOULD")) == (9, 3)
    assert (count("1.36", "MUST"), count("1.36", "SHOULD")) == (8, 6)


def test_dra_support_levels_change_across_versions():
    dra = checklists.load().get("dra_support")
    assert [dra.level(v) for v in ("1.33", "1.34", "1.35", "1.36")] == ["SHOULD", "MUST", "MUST", None]


def test_requirements_come_in_category_order():
    cl = checklists.load()
    cats = [r.category for r in cl.for_version("1.36")]
    assert cats == sorted(cats, key=cl.categories.index)


@pytest.mark.parametrize("server, expected", [("v1.36.3", "1.36"), ("v1.33.0-eks-1", "1.33"), ("1.35.2", "1.35")])
def test_version_from_server(server, expected):
    assert checklists.version_from_server(server) == expected


def test_server_outside_range_is_refused_unless_nearest_is_asked():
    with pytest.raises(ConfigError, match="no AI Conformance checklist"):
        checklists.version_from_server("v1.31.4")
    assert checklists.version_from_server("v1.31.4", nearest=True) == "1.33"
    assert checklists.version_from_server("v1.38.0", nearest=True) == "1.36"


def test_unknown_ids_and_versions_name_the_bad_value():
    with pytest.raises(ConfigError, match="unknown requirement id 'gpu_magic'"):
        checklists.load().get("gpu_magic")
    with pytest.raises(ConfigError, match="unsupported checklist version '1.30'"):
        checklists.load().for_version("1.30")


def test_no_official_description_sentences_are_copied():
    # Our summaries are our own words: the official texts start with these phrases.
    text = checklists.DATA.read_text()
    for phrase in ("Support Dynamic Resource Allocation (DRA) APIs to enable", "must allow for the installation and successful operation"):
        assert phrase not in text
