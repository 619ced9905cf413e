import pytest

from aiconf.model import MustNaPolicy, NotApplicable, ProductStatus, RequirementResult, SubCheck, Verdict, aggregate, product_status

V = Verdict


def result(*subs, expected=(), level="MUST", error=None):
    r = RequirementResult("gang_scheduling", "1.36", level, subchecks=[SubCheck(i, v, required=req) for i, v, req in subs],
                          expected_subchecks=list(expected), error=error)
    return r


@pytest.mark.parametrize(
    "subs, expected, verdict",
    [
        ([("a", V.PASS, True), ("b", V.PASS, True)], (), V.PASS),
        ([("a", V.PASS, True), ("b", V.FAIL, True)], (), V.FAIL),
        ([("a", V.ERROR, True), ("b", V.FAIL, True)], (), V.FAIL),
        ([("a", V.PASS, True), ("b", V.ERROR, True)], (), V.ERROR),
        ([("a", V.PASS, True), ("b", V.UNKNOWN, True)], (), V.UNKNOWN),
        ([("a", V.NOT_APPLICABLE, True)], (), V.NOT_APPLICABLE),
        ([("a", V.PASS, True), ("b", V.NOT_APPLICABLE, True)], (), V.PASS),
        ([("a", V.PASS, True), ("b", V.FAIL, False)], (), V.PASS),
        ([("a", V.PASS, True)], ("a", "b"), V.UNKNOWN),
        ([], (), V.UNKNOWN),
    ],
    ids=["all-pass", "required-fail-dominates", "fail-beats-error", "error", "unknown", "all-na", "pass-with-na",
         "informational-fail-ignored", "declared-but-never-recorded", "nothing-recorded"],
)
def test_aggregation_rule(subs, expected, verdict):
    assert aggregate(result(*subs, expected=expected))[0] is verdict


def test_a_crashed_check_is_error_whatever_it_recorded():
    r = result(("a", V.PASS, True), error={"message": "boom"})
    assert aggregate(r) == (V.ERROR, "check did not complete: boom")


def test_round_trip_through_json(tmp_path):
    r = result(("a", V.PASS, True), ("b", V.NOT_APPLICABLE, False)).finalize()
    r.not_applicable = NotApplicable("no_autoscaler", "fixed on-prem nodes")
    back = RequirementResult.read(r.write(tmp_path / "results" / "x.json"))
    assert back.to_dict() == r.to_dict()
    assert back.run_dir == tmp_path


def test_product_status_mapping_and_must_na_policy():
    passed = result(("a", V.PASS, True)).finalize()
    assert product_status(passed)[0] == ProductStatus.IMPLEMENTED
    partial = result(("a", V.PASS, True), ("b", V.FAIL, True)).finalize()
    assert product_status(partial)[0] == ProductStatus.PARTIALLY_IMPLEMENTED
    failed = result(("a", V.FAIL, True)).finalize()
    assert product_status(failed)[0] == ProductStatus.NOT_IMPLEMENTED
    na = result(("a", V.NOT_APPLICABLE, True)).finalize()
    na.not_applicable = NotApplicable("no_autoscaler", "the nodes are fixed hardware")
    status, notes, warnings = product_status(na, MustNaPolicy.NA)
    assert (status, notes) == (ProductStatus.NOT_APPLICABLE, "the nodes are fixed hardware")
    assert "validator rejects" in warnings[0]
    status, notes, warnings = product_status(na, MustNaPolicy.IMPLEMENTED_WITH_NOTE)
    assert status == ProductStatus.IMPLEMENTED and "Not applicable" in notes and warnings
    unknown = result(("a", V.UNKNOWN, True)).finalize()
    assert product_status(unknown)[0] == ProductStatus.UNDECIDED


def test_newer_schema_is_refused():
    d = result(("a", V.PASS, True)).finalize().to_dict()
    d["schema_version"] = 99
    with pytest.raises(ValueError, match="newer"):
        RequirementResult.from_dict(d)
