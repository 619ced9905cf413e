"""Reading the program's template round-trip, and the user's metadata file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aiconf.errors import ConfigError
from aiconf.submission.template import (
    _indentation,
    fill_metadata,
    load_template,
    load_user_input,
    placeholders_left,
    set_answer,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "submission"
TEMPLATE = DATA / "AIConformance-1.35.yaml"


def comment_lines(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def test_template_version_from_its_name_and_content():
    assert load_template(TEMPLATE).version == "1.35"
    assert load_template(DATA / "AIConformance-1.36.yaml").version == "1.36"


def test_template_version_from_content_when_renamed(tmp_path):
    renamed = tmp_path / "checklist.yaml"
    renamed.write_text((DATA / "AIConformance-1.36.yaml").read_text().replace("  kubernetesVersion: v1.36\n", ""))
    assert load_template(renamed).version == "1.36"


def test_template_named_for_another_version_is_rejected(tmp_path):
    wrong = tmp_path / "AIConformance-1.34.yaml"
    wrong.write_text(TEMPLATE.read_text())
    with pytest.raises(ConfigError, match="named for 1.34 but its requirements are those of 1.35"):
        load_template(wrong)


@pytest.mark.parametrize(
    "content, match",
    [(None, "unreadable"), ("spec: [", "not valid YAML"), ("a: 1\n", "has no metadata and spec")],
    ids=["missing", "not-yaml", "not-a-template"],
)
def test_unusable_template(tmp_path, content, match):
    path = tmp_path / "AIConformance-1.35.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_template(path)


def test_round_trip_keeps_comments_order_and_text():
    tpl = load_template(TEMPLATE)
    original = TEMPLATE.read_text()
    fill_metadata(tpl, {"platformName": "Example", "platform_version": "4.2"})
    for _, entry in tpl.requirements():
        set_answer(entry, "Implemented", ["report.html", f"results/{entry['id']}.json"], "Verified: it works.")
    out = tpl.dumps()
    # every comment of the template survives, in order
    assert comment_lines(out) == comment_lines(original)
    # header comment block is byte-identical
    assert out.split("metadata:")[0] == original.split("metadata:")[0]
    before, after = yaml.safe_load(original), yaml.safe_load(out)
    # key order of the document, the metadata and each requirement is unchanged
    assert list(after) == list(before)
    assert list(after["metadata"]) == list(before["metadata"])
    assert list(after["spec"]) == list(before["spec"])
    for cat in before["spec"]:
        for b, a in zip(before["spec"][cat], after["spec"][cat], strict=True):
            assert list(a) == list(b)
            # only status, evidence and notes changed; id, description and level are the template's
            assert {k: a[k] for k in ("id", "description", "level")} == {
                k: b[k] for k in ("id", "description", "level")
            }
            assert a["status"] == "Implemented" and a["evidence"][0] == "report.html" and a["notes"]
    assert after["metadata"]["platformName"] == "Example"
    assert after["metadata"]["platformVersion"] == "4.2"  # a string, quoted like the template
    assert 'platformVersion: "4.2"' in out
    assert "kubernetesVersion: v1.35\n" in out  # left plain, as the template wrote it
    # lines that were not filled are byte-identical
    untouched = [
        line for line in original.splitlines() if "description:" in line or "level:" in line or "- id:" in line
    ]
    for line in untouched:
        assert line in out.splitlines()


def test_description_lines_are_never_rewrapped(tmp_path):
    long = "x " * 300
    text = TEMPLATE.read_text().replace("Fixture description of gang_scheduling.", long.strip())
    path = tmp_path / "AIConformance-1.35.yaml"
    path.write_text(text)
    tpl = load_template(path)
    assert f'description: "{long.strip()}"' in tpl.dumps()


def test_indentation_is_detected():
    assert _indentation(TEMPLATE.read_text()) == (2, 4, 2)
    assert _indentation("metadata:\n    a: 1\nspec:\n    accelerators:\n    - id: x\n      level: MUST\n") == (4, 2, 0)


def test_fill_metadata_adds_missing_required_key_and_drops_optional():
    tpl = load_template(DATA / "AIConformance-1.36.yaml")
    warnings = fill_metadata(
        tpl,
        {
            "k8s_conformance_url": "https://github.com/cncf/k8s-conformance/tree/master/v1.36/x",
            "repoUrl": None,
            "favouriteColour": "blue",
        },
    )
    meta = tpl.doc["metadata"]
    assert meta["k8sConformanceUrl"].endswith("/v1.36/x")
    assert "repoUrl" not in meta
    assert warnings == ["metadata.favouriteColour: not a PRODUCT.yaml metadata key; ignored"]
    assert "platformName" in placeholders_left(tpl)


def test_user_input_sections():
    user = load_user_input(DATA / "metadata.yaml")
    assert user.metadata["platformName"] == "Example AI Platform"
    assert user.evidence["gang_scheduling"] == ["https://docs.example.com/ai-platform/gang-scheduling"]
    assert user.requirements["virtualized_accelerator"]["status"] == "N/A"
    assert "Kubernetes distribution" in user.readme["about"]


def test_user_input_flat_form(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("platformName: X\nvendorName: Y\n")
    assert load_user_input(path).metadata == {"platformName": "X", "vendorName": "Y"}


@pytest.mark.parametrize(
    "content, match",
    [
        ("- a\n", "must be a YAML mapping"),
        ("metadata: {}\nextras: 1\n", "unknown section"),
        ("metadata: []\n", "metadata must be a mapping"),
        ("metadata: {}\nevidence: {gang_scheduling: https://x}\n", "evidence must map"),
        ("metadata: {}\nrequirements: {gang_scheduling: {status: Done}}\n", "is not one of"),
        ("metadata: {}\nrequirements: {gang_scheduling: {verdict: PASS}}\n", "unknown key"),
        ("metadata: {}\nreadme: {title: x}\n", "readme may only have"),
        ("metadata: [\n", "not valid YAML"),
    ],
    ids=[
        "list",
        "unknown-section",
        "metadata-list",
        "evidence-scalar",
        "bad-status",
        "bad-answer-key",
        "bad-readme-key",
        "not-yaml",
    ],
)
def test_bad_user_input(tmp_path, content, match):
    path = tmp_path / "m.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_user_input(path)


def test_missing_user_input(tmp_path):
    with pytest.raises(ConfigError, match="unreadable"):
        load_user_input(tmp_path / "nope.yaml")
