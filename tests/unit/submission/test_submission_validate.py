"""Every rule of our PRODUCT.yaml validator, each with a valid and an invalid case (offline only: no network here)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from aiconf import checklists
from aiconf.errors import ConfigError
from aiconf.submission.validator import ERROR, INFO, WARNING, Problem, is_valid, landscape_members, validate

DATA = Path(__file__).resolve().parents[2] / "data" / "submission"

METADATA = {
    "kubernetesVersion": "v1.35",
    "platformName": "Example AI Platform",
    "platformVersion": "4.2",
    "vendorName": "Example Corp",
    "websiteUrl": "https://example.com/ai-platform",
    "repoUrl": "https://github.com/example/ai-platform",
    "documentationUrl": "https://docs.example.com/ai-platform",
    "productLogoUrl": "https://example.com/logo.svg",
    "description": "An AI platform.",
    "contactEmailAddress": "conformance@example.com",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.35/example",
}


def valid_product(version: str = "1.35") -> dict:
    """A PRODUCT.yaml that passes every rule: all MUSTs Implemented with a local evidence file."""
    spec: dict[str, list] = {}
    for r in checklists.load().for_version(version):
        level = r.level(version)
        entry = {
            "id": r.id,
            "description": f"placeholder {r.id}",
            "level": level,
            "status": "Implemented",
            "evidence": ["report.html"],
            "notes": "",
        }
        if level == "SHOULD":
            entry.update(status="", evidence=[])
        spec.setdefault(r.category, []).append(entry)
    return {"metadata": {**METADATA, "kubernetesVersion": f"v{version}"}, "spec": spec}


def write(tmp_path: Path, product: dict, *, folder: str = "v1.35/example") -> Path:
    base = tmp_path / folder
    base.mkdir(parents=True, exist_ok=True)
    (base / "report.html").write_text("<html></html>")
    path = base / "PRODUCT.yaml"
    path.write_text(yaml.safe_dump(product, sort_keys=False))
    return path


def entry(product: dict, rid: str) -> dict:
    return next(e for entries in product["spec"].values() for e in entries if e["id"] == rid)


def errors(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == ERROR]


def test_valid_product_has_no_errors(tmp_path):
    problems = validate(write(tmp_path, valid_product()))
    assert errors(problems) == []
    assert is_valid(problems)
    # offline: the URLs are listed as not checked, in one line
    assert [p.message for p in problems if p.severity == INFO] == ["5 URL(s) not checked (offline)"]


@pytest.mark.parametrize("version", ["1.33", "1.34", "1.35", "1.36"])
def test_every_checklist_version_validates(tmp_path, version):
    product = valid_product(version)
    product["metadata"]["k8sConformanceUrl"] = f"https://github.com/cncf/k8s-conformance/tree/main/v{version}/x/"
    assert errors(validate(write(tmp_path, product, folder=f"v{version}/x"))) == []


# -- metadata ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "kubernetesVersion",
        "platformName",
        "platformVersion",
        "vendorName",
        "websiteUrl",
        "documentationUrl",
        "productLogoUrl",
        "description",
        "contactEmailAddress",
        "k8sConformanceUrl",
    ],
)
def test_missing_required_metadata_is_an_error(tmp_path, key):
    product = valid_product()
    del product["metadata"][key]
    assert f"metadata.{key}: required field is missing" in errors(validate(write(tmp_path, product)))


def test_repo_url_is_optional(tmp_path):
    product = valid_product()
    del product["metadata"]["repoUrl"]
    assert errors(validate(write(tmp_path, product))) == []


def test_snake_case_metadata_keys_are_accepted(tmp_path):
    product = valid_product()
    product["metadata"] = {
        ("k8s_conformance_url" if k == "k8sConformanceUrl" else "platform_name" if k == "platformName" else k): v
        for k, v in product["metadata"].items()
    }
    assert errors(validate(write(tmp_path, product))) == []


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("platformName", "[Platform Name]", "still holds the template placeholder [Platform Name]"),
        ("vendorName", "", "is empty"),
        ("platformVersion", 4.2, "must be a string, not float"),
        ("repoUrl", "[Repository URL]", "still holds the template placeholder [Repository URL]"),
        ("contactEmailAddress", "nobody", "is not an e-mail address (nobody)"),
    ],
    ids=["placeholder", "empty", "not-a-string", "optional-placeholder", "bad-email"],
)
def test_bad_metadata_values_are_errors(tmp_path, key, value, message):
    product = valid_product()
    product["metadata"][key] = value
    assert f"metadata.{key}: {message}" in errors(validate(write(tmp_path, product)))


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://github.com/cncf/k8s-conformance/tree/master/v1.35/example", True),
        ("https://github.com/cncf/k8s-conformance/tree/main/v1.35/example/", True),
        ("https://github.com/cncf/k8s-conformance/pull/1234", False),
        ("https://github.com/cncf/k8s-conformance/tree/master/v1.35/example/PRODUCT.yaml", False),
        ("http://github.com/cncf/k8s-conformance/tree/master/v1.35/example", False),
        ("https://github.com/cncf/k8s-conformance/tree/master/1.35/example", False),
    ],
    ids=["master", "main-trailing-slash", "pull-request", "file-not-folder", "http", "no-v-prefix"],
)
def test_k8s_conformance_url_format(tmp_path, url, ok):
    product = valid_product()
    product["metadata"]["k8sConformanceUrl"] = url
    problems = errors(validate(write(tmp_path, product)))
    assert (not any(p.startswith("metadata.k8sConformanceUrl") for p in problems)) is ok


def test_png_logo_is_only_a_warning(tmp_path):
    product = valid_product()
    product["metadata"]["productLogoUrl"] = "https://example.com/logo.png"
    problems = validate(write(tmp_path, product))
    assert is_valid(problems)
    assert any(p.where == "metadata.productLogoUrl" and p.severity == WARNING for p in problems)


# -- vendor / landscape ------------------------------------------------------------------------------------------------
def test_landscape_members_strip_member_suffixes():
    members = landscape_members((DATA / "landscape.yml").read_text())
    assert members == {"Example Corp", "Other Vendor Inc."}


def test_vendor_in_landscape_is_valid(tmp_path):
    assert errors(validate(write(tmp_path, valid_product()), landscape=DATA / "landscape.yml")) == []


def test_vendor_not_in_landscape_is_an_error(tmp_path):
    product = valid_product()
    product["metadata"]["vendorName"] = "example corp"
    problems = errors(validate(write(tmp_path, product), landscape=DATA / "landscape.yml"))
    assert problems == [
        "metadata.vendorName: 'example corp' is not a CNCF member in the landscape (did you mean 'Example Corp'?)"
    ]


def test_unreadable_landscape_is_unusable_input(tmp_path):
    with pytest.raises(ConfigError, match="landscape file"):
        validate(write(tmp_path, valid_product()), landscape=tmp_path / "missing.yml")


# -- spec structure ----------------------------------------------------------------------------------------------------
def test_missing_requirement_is_an_error(tmp_path):
    product = valid_product()
    product["spec"]["schedulingOrchestration"] = [
        e for e in product["spec"]["schedulingOrchestration"] if e["id"] != "gang_scheduling"
    ]
    assert "gang_scheduling: is missing from spec.schedulingOrchestration (checklist 1.35)" in errors(
        validate(write(tmp_path, product))
    )


def test_missing_category_is_an_error(tmp_path):
    product = valid_product()
    del product["spec"]["operator"]
    assert "spec.operator: category is missing (checklist 1.35)" in errors(validate(write(tmp_path, product)))


def test_requirement_under_the_wrong_category_is_an_error(tmp_path):
    product = valid_product()
    moved = entry(product, "robust_controller")
    product["spec"]["operator"] = []
    product["spec"]["security"].append(moved)
    problems = errors(validate(write(tmp_path, product)))
    assert "robust_controller: is under security; checklist 1.35 lists it under operator" in problems


def test_extra_and_duplicate_ids_are_warnings(tmp_path):
    product = valid_product()
    product["spec"]["networking"].append({"id": "workload_sandboxing", "level": "SHOULD", "status": "", "evidence": []})
    product["spec"]["networking"].append(copy.deepcopy(entry(product, "ai_inference")))
    problems = validate(write(tmp_path, product))
    assert is_valid(problems)
    warnings = [str(p) for p in problems if p.severity == WARNING]
    assert "warning: workload_sandboxing: is not a requirement of checklist 1.35 (ignored by the program)" in warnings
    assert "warning: ai_inference: listed twice (in networking and networking)" in warnings


def test_changed_level_is_a_warning(tmp_path):
    product = valid_product()
    entry(product, "dra_support")["level"] = "SHOULD"
    problems = validate(write(tmp_path, product))
    assert is_valid(problems)
    assert any(p.where == "dra_support" and "must not be changed" in p.message for p in problems)


# -- status rules ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["Not Implemented", "Partially Implemented", "N/A"])
def test_must_must_be_implemented(tmp_path, status):
    product = valid_product()
    entry(product, "gang_scheduling").update(status=status, notes="because")
    assert f"gang_scheduling: MUST requirement has status '{status}'; the program accepts only 'Implemented'" in errors(
        validate(write(tmp_path, product))
    )


@pytest.mark.parametrize("status", ["Implemented", "Not Implemented", "Partially Implemented"])
def test_should_accepts_the_other_statuses(tmp_path, status):
    product = valid_product()
    entry(product, "gpu_sharing").update(status=status, evidence=["report.html"])
    assert errors(validate(write(tmp_path, product))) == []


@pytest.mark.parametrize("status", ["implemented", "Yes", "Done"])
def test_status_vocabulary(tmp_path, status):
    product = valid_product()
    entry(product, "gpu_sharing").update(status=status, evidence=["report.html"])
    problems = errors(validate(write(tmp_path, product)))
    assert problems == [
        f"gpu_sharing: status '{status}' is not valid; expected one of: Implemented, Not Implemented, "
        "Partially Implemented, N/A"
    ]


def test_empty_should_without_evidence_is_skipped(tmp_path):
    product = valid_product()
    entry(product, "gpu_sharing").update(status="", evidence=[], notes="")
    assert errors(validate(write(tmp_path, product))) == []


def test_empty_should_with_evidence_is_an_error(tmp_path):
    product = valid_product()
    entry(product, "gpu_sharing").update(status="", evidence=["report.html"])
    assert errors(validate(write(tmp_path, product))) == [
        "gpu_sharing: status is empty; expected one of: Implemented, Not Implemented, Partially Implemented, N/A"
    ]


def test_empty_must_is_an_error(tmp_path):
    product = valid_product()
    entry(product, "robust_controller").update(status="")
    assert any(p.startswith("robust_controller: status is empty") for p in errors(validate(write(tmp_path, product))))


def test_na_needs_notes(tmp_path):
    product = valid_product()
    entry(product, "gpu_sharing").update(status="N/A", notes="")
    assert errors(validate(write(tmp_path, product))) == ["gpu_sharing: status N/A needs a justification in notes"]
    entry(product, "gpu_sharing").update(notes="Whole GPUs only.")
    assert errors(validate(write(tmp_path, product))) == []


# -- evidence ----------------------------------------------------------------------------------------------------------
def test_missing_evidence_file_is_an_error(tmp_path):
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = ["report.html", "evidence/ai_inference/missing.log"]
    problems = errors(validate(write(tmp_path, product)))
    assert len(problems) == 1 and problems[0].startswith(
        "ai_inference: evidence file 'evidence/ai_inference/missing.log' does not exist"
    )


def test_evidence_folder_and_leading_slash_resolve_like_the_program(tmp_path):
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = ["/report.html", "evidence/ai_inference", ""]
    path = write(tmp_path, product)
    (path.parent / "evidence" / "ai_inference").mkdir(parents=True)
    assert errors(validate(path)) == []


def test_scalar_evidence_is_an_error(tmp_path):
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = "https://docs.example.com"
    assert (
        "ai_inference: evidence must be a list of strings (the program's validator cannot read a single str)"
        in errors(validate(write(tmp_path, product)))
    )


def test_non_string_evidence_entry_is_an_error(tmp_path):
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = [{"url": "https://x"}]
    assert "ai_inference: evidence[0] must be a string, not dict" in errors(validate(write(tmp_path, product)))


def test_must_without_evidence_is_a_warning(tmp_path):
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = []
    problems = validate(write(tmp_path, product))
    assert is_valid(problems)
    assert "warning: ai_inference: MUST requirement lists no evidence" in [str(p) for p in problems]


def test_evidence_urls_are_not_fetched_offline(tmp_path, monkeypatch):
    import aiconf.submission.validator as v

    def boom(*a, **k):  # any network access fails the test
        raise AssertionError("network used offline")

    monkeypatch.setattr(v, "url_problem", boom)
    monkeypatch.setattr(v.urllib.request, "urlopen", boom)
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = ["https://docs.example.com/gateway"]
    assert errors(validate(write(tmp_path, product), offline=True)) == []


def test_online_mode_reports_unreachable_urls(tmp_path, monkeypatch):
    import aiconf.submission.validator as v

    monkeypatch.setattr(v, "url_problem", lambda url, timeout_s: "HTTP 404" if "gone" in url else None)
    product = valid_product()
    entry(product, "ai_inference")["evidence"] = ["https://docs.example.com/gone"]
    problems = errors(validate(write(tmp_path, product), offline=False))
    assert problems == ["ai_inference: URL https://docs.example.com/gone is not reachable (HTTP 404)"]


# -- version and unusable input ----------------------------------------------------------------------------------------
def test_version_comes_from_the_folder_first(tmp_path):
    product = valid_product("1.36")  # 1.36 content in a v1.35 folder: checked as 1.35, so dra_support is missing
    path = write(tmp_path, product, folder="v1.35/x")
    problems = validate(path)
    assert "dra_support: is missing from spec.accelerators (checklist 1.35)" in errors(problems)
    assert any(p.where == "metadata.kubernetesVersion" and p.severity == WARNING for p in problems)


def test_outside_a_version_folder_is_a_warning_and_uses_kubernetes_version(tmp_path):
    path = write(tmp_path, valid_product("1.34"), folder="somewhere")
    problems = validate(path)
    assert is_valid(problems)
    assert any(p.where == "file" and p.severity == WARNING and "v1.34/" in p.message for p in problems)


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "does not exist"),
        ("metadata: [unclosed", "is not valid YAML"),
        ("- a list\n- not a mapping\n", "is not a YAML mapping"),
        ("metadata: {}\nspec: {}\n", "cannot tell which checklist version"),
    ],
    ids=["missing", "not-yaml", "not-a-mapping", "no-version"],
)
def test_unusable_input_raises_config_error(tmp_path, content, match):
    path = tmp_path / "PRODUCT.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        validate(path)


def test_problem_prints_as_one_line_with_the_requirement_id():
    assert (
        str(Problem("gang_scheduling", "MUST requirement has status 'N/A'"))
        == "gang_scheduling: MUST requirement has status 'N/A'"
    )
    assert str(Problem("file", "x", WARNING)) == "warning: file: x"


# -- online, against a server on the loopback address only ----------------------------------------------------------
@pytest.fixture
def local_server():
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's naming
            if self.path == "/no-head":
                self.send_response(405)
            else:
                self.send_response(200 if self.path.startswith("/ok") else 404)
            self.end_headers()

        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path in ("/ok", "/no-head") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_problem_head_then_get(local_server):
    from aiconf.submission.validator import url_problem

    assert url_problem(f"{local_server}/ok", 5) is None
    assert url_problem(f"{local_server}/no-head", 5) is None  # HEAD refused, GET answers
    assert url_problem(f"{local_server}/missing", 5) == "HTTP 404"


def test_online_validation_checks_metadata_and_evidence_urls(tmp_path, local_server, monkeypatch):
    import aiconf.submission.validator as v

    product = valid_product()
    for key in ("websiteUrl", "repoUrl", "documentationUrl", "productLogoUrl"):
        product["metadata"][key] = f"{local_server}/ok/{key}.svg"
    entry(product, "ai_inference")["evidence"] = [f"{local_server}/missing"]
    real = v.url_problem
    # k8sConformanceUrl must point at github.com, which this machine cannot reach: answer that one locally
    monkeypatch.setattr(
        v, "url_problem", lambda url, t: None if url.startswith("https://github.com/") else real(url, t)
    )
    errs = errors(validate(write(tmp_path, product), offline=False, timeout_s=5))
    assert errs == [f"ai_inference: URL {local_server}/missing is not reachable (HTTP 404)"]
