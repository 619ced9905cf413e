"""The test inference server answers like an OpenAI endpoint, says who answered, and counts what it served."""

from __future__ import annotations

import http.client
import json
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiconf.workloads import inference_stub


@pytest.fixture
def stub():
    lines: list[str] = []
    server = inference_stub.make_server(
        "127.0.0.1", 0, version="v2", model="m1", role="decode", pod="pod-a", log=lines.append
    )
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, lines
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def families(server):
    _, data = request(server, "GET", "/metrics")
    return {f.name: f for f in text_string_to_metric_families(data.decode())}


def test_a_chat_completion_names_the_backend_and_echoes_the_request_id(stub):
    server, lines = stub
    resp, data = request(
        server,
        "POST",
        "/v1/chat/completions",
        {"model": "llama", "messages": [{"role": "user", "content": "two words"}]},
        {"X-Request-Id": "rid-1", "Content-Type": "application/json"},
    )
    doc = json.loads(data)
    assert resp.status == 200
    assert resp.getheader("X-Aiconf-Version") == "v2" and resp.getheader("X-Request-Id") == "rid-1"
    assert doc["model"] == "llama" and doc["object"] == "chat.completion"
    assert doc["aiconf"] == {"version": "v2", "pod": "pod-a", "role": "decode", "request_id": "rid-1"}
    assert doc["usage"]["prompt_tokens"] == 2
    logged = json.loads(lines[-1])
    assert logged["request_id"] == "rid-1" and logged["role"] == "decode" and logged["code"] == 200


def test_metrics_count_exactly_the_completions_served(stub):
    server, _ = stub
    for _ in range(7):
        request(server, "POST", "/v1/completions", {"prompt": "a b c"})
    request(server, "GET", "/v1/models")  # not a completion: not counted
    request(server, "GET", "/healthz")
    fams = families(server)
    total = [s for s in fams["aiconf_requests"].samples if s.name == "aiconf_requests_total"]
    assert [(s.labels["model"], s.labels["code"], s.value) for s in total] == [("m1", "200", 7.0)]
    hist = {
        s.labels.get("le"): s.value
        for s in fams["aiconf_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert hist["+Inf"] == 7.0
    count = [s.value for s in fams["aiconf_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert count == [7.0]
    assert fams["aiconf_prompt_tokens"].samples[0].value == 21.0
    assert fams["aiconf_requests_running"].samples[0].value == 0.0


def test_a_bad_body_is_a_400_and_counted_as_such(stub):
    server, _ = stub
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("POST", "/v1/completions", body=b"[not json")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 400
    codes = {
        s.labels["code"]: s.value
        for s in families(server)["aiconf_requests"].samples
        if s.name == "aiconf_requests_total"
    }
    assert codes == {"400": 1.0}


def test_models_and_unknown_paths(stub):
    server, _ = stub
    _, data = request(server, "GET", "/v1/models")
    assert json.loads(data)["data"][0]["id"] == "m1"
    assert request(server, "GET", "/nope")[0].status == 404
    assert request(server, "POST", "/v1/embeddings", {})[0].status == 404


def test_a_decode_server_hands_the_request_to_prefill_first_with_the_same_id(stub):
    prefill, prefill_lines = stub
    decode_lines: list[str] = []
    decode = inference_stub.make_server(
        "127.0.0.1",
        0,
        version="v1",
        model="m1",
        role="decode",
        pod="pod-d",
        log=decode_lines.append,
        prefill_url=f"http://127.0.0.1:{prefill.server_address[1]}",
    )
    threading.Thread(target=decode.serve_forever, daemon=True).start()
    try:
        resp, data = request(decode, "POST", "/v1/completions", {"prompt": "x"}, {"X-Request-Id": "rid-pd"})
        assert resp.status == 200
        assert json.loads(data)["aiconf"]["prefill_pod"] == "pod-a"
        assert json.loads(prefill_lines[-1])["request_id"] == "rid-pd"
        assert json.loads(decode_lines[-1])["request_id"] == "rid-pd"
    finally:
        decode.shutdown()
        decode.server_close()


def test_a_failed_hand_over_is_a_502_not_an_answer():
    decode = inference_stub.make_server(
        "127.0.0.1",
        0,
        version="v1",
        model="m1",
        role="decode",
        pod="pod-d",
        log=lambda line: None,
        prefill_url="http://127.0.0.1:9",
    )
    threading.Thread(target=decode.serve_forever, daemon=True).start()
    try:
        resp, _ = request(decode, "POST", "/v1/completions", {"prompt": "x"})
        assert resp.status == 502
    finally:
        decode.shutdown()
        decode.server_close()


def test_without_the_knobs_no_vllm_gauges_are_advertised(stub):
    server, _ = stub
    assert not [name for name in families(server) if name.startswith("vllm:")]


def test_the_advertised_load_is_exposed_under_the_vllm_names_an_endpoint_picker_reads():
    server = serve_stub(queue_depth=7, kv_cache_usage=0.25)
    try:
        fams = families(server)
        gauge = {n: fams[n].samples[0].value for n in fams if n.startswith("vllm:")}
        assert gauge["vllm:num_requests_waiting"] == 7.0 and gauge["vllm:num_requests_running"] == 0.0
        assert gauge["vllm:kv_cache_usage_perc"] == 0.25 and gauge["vllm:gpu_cache_usage_perc"] == 0.25
        lora = fams["vllm:lora_requests_info"].samples[0].labels
        assert lora["running_lora_adapters"] == "" and lora["max_lora"] == "1"
        assert fams["vllm:cache_config_info"].samples[0].labels["block_size"] == "16"
        # changed at run time through a GET (what the API server's pod proxy allows the toolkit)
        resp, data = request(server, "GET", "/aiconf/advertise?queue_depth=30&kv_cache_usage=0.9")
        assert resp.status == 200 and json.loads(data) == {"pod": "pod-q", "queue_depth": 30, "kv_cache_usage": 0.9}
        after = families(server)
        assert after["vllm:num_requests_waiting"].samples[0].value == 30.0
        assert after["vllm:kv_cache_usage_perc"].samples[0].value == 0.9
        assert request(server, "GET", "/aiconf/advertise?queue_depth=many")[0].status == 400
        # the other behaviour is unchanged: it still answers and counts completions
        assert request(server, "POST", "/v1/completions", {"prompt": "x"})[0].status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_knob_is_on_the_command_line(monkeypatch):
    args = ["--port", "0", "--queue-depth", "3", "--kv-cache-usage", "0.5"]
    parsed = {}

    def fake_make_server(address, port, **kw):
        parsed.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(inference_stub, "make_server", fake_make_server)
    with pytest.raises(SystemExit):
        inference_stub.main(args)
    assert parsed["queue_depth"] == 3 and parsed["kv_cache_usage"] == 0.5


def serve_stub(**advertised):
    server = inference_stub.make_server(
        "127.0.0.1", 0, version="v1", model="m1", pod="pod-q", log=lambda line: None, **advertised
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
