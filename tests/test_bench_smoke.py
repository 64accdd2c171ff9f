"""The benchmark harness (`make bench`) works: a quick run through direct and flowbase is well formed.

These tests never look at timings (speed is what `make bench` reports, not what tests assert); they
prove that the harness measures real requests, counts errors, checks answers, and writes its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bench import measure, report, run, targets
from bench.loadgen import ensure_wrk, run_wrk
from bench.upstream import expected_reply

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[targets.Upstream]:
    up = targets.start_upstream(tmp_path_factory.mktemp("bench-upstream"), chunks=5, delay_ms=0, label="test")
    try:
        yield up
    finally:
        up.service.stop()


def test_fake_upstream_answers_the_openai_sdk_streamed_and_not_with_usage(upstream: targets.Upstream) -> None:
    sdk = openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    try:
        plain = sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": "ping 1"}])
        assert plain.choices[0].message.content == expected_reply("ping 1", 5)
        assert plain.choices[0].finish_reason == "stop"
        assert plain.usage is not None and plain.usage.completion_tokens == 5
        chunks = list(sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": "ping 2"}],
                                                  stream=True, stream_options={"include_usage": True}))
    finally:
        sdk.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply("ping 2", 5)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_wrk_counts_http_errors_so_a_broken_target_cannot_look_healthy(upstream: targets.Upstream) -> None:
    res = run_wrk(ensure_wrk(), f"http://127.0.0.1:{upstream.port}/v1/no-such-route", connections=2, duration_s=1,
                  bodies=[b"{}"], headers={})
    assert res.requests > 0
    assert res.errors == res.requests == res.error_breakdown["status"]


def test_a_target_whose_answer_differs_from_the_upstreams_is_reported_as_failed(upstream: targets.Upstream) -> None:
    direct = targets.direct_target(upstream)
    measure.check_answers(direct, chunks=5)
    with pytest.raises(measure.TargetFailed, match="is not the upstream's"):
        measure.check_answers(direct, chunks=6)


def test_quick_run_through_direct_and_flowbase_has_zero_errors_and_writes_well_formed_json(tmp_path: Path) -> None:
    cfg = measure.BenchConfig.quick()
    doc = run.run(cfg, only=("direct", "flowbase", "flowbase-notrace"), results_dir=tmp_path)

    saved = json.loads(Path(doc["results_file"]).read_text())
    assert Path(doc["results_file"]).parent == tmp_path
    assert saved["targets"].keys() == {"direct", "flowbase", "flowbase-notrace"}
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["flowbase_deps"]["msgspec"] != "not installed"
    for name, res in saved["targets"].items():
        assert res["status"] == "ok", f"{name}: {res['error']}"
        for phase in ("c1", "c32", "c128"):
            assert res[phase]["requests"] > 0, (name, phase)
            assert res[phase]["errors"] == 0, (name, phase, res[phase]["error_breakdown"])
            assert set(res[phase]["latency_ms"]) >= {"p50", "p99"}
        assert res["ttfb"]["requests"] > 0 and res["ttfb"]["errors"] == 0, res["ttfb"]["first_error"]
        assert res["ttfb"]["ttfb_ms"]["p50"] > 0

    fb = saved["targets"]["flowbase"]
    # Every request the load generator counted went through flowbase to the upstream.
    assert fb["upstream_requests"] >= fb["c1"]["requests"] + fb["c32"]["requests"] + fb["c128"]["requests"]
    assert fb["memory"]["rss_mb"] > 0 and fb["memory"]["processes"] >= 2  # the host and at least one runner
    assert fb["cpu32"]["gateway_pct"] > 0
    assert all(res["cpu_probe_ms"] > 0 for res in saved["targets"].values())  # the VM's speed, before each

    soak = saved["soak"]
    assert soak["error"] is None
    assert soak["soak"]["completed_ok"] == soak["soak"]["requests"] == cfg.soak_concurrency, soak["soak"]["failures"]
    assert soak["growth_requests"] >= cfg.growth_requests and soak["growth_errors"] == 0
    assert soak["rss_after_growth_mb"] > 0
    # Each reading is also split per process (host first, then its runners), adding up to the total.
    each = soak["by_process_mb"]
    assert set(each) == {"before", "after_soak", "after_growth"} and len(each["before"]) >= 2
    assert sum(each["after_growth"]) == pytest.approx(soak["rss_after_growth_mb"])

    added = saved["added_over_direct_ms"]["flowbase"]
    assert added["p50_ms"] is not None and added["ttfb_p50_ms"] is not None
    # Tracing on against off, with the benchmark's requests and with an agent's (reported, not a target).
    for key, rounds in (("tracing_ab", cfg.ab_rounds), ("tracing_ab_agent", cfg.agent_ab_rounds)):
        ab = saved[key]
        assert len(ab["on_rps"]) == len(ab["off_rps"]) == rounds and min(ab["on_rps"] + ab["off_rps"]) > 0, key
        assert ab["errors"] == 0 and ab["rss_on_mb"] > 0 and ab["rss_off_mb"] > 0, key
    assert saved["tracing_ab_agent"]["request_bytes"] > 30_000 > saved["tracing_ab"]["request_bytes"]
    verdicts = {c["name"]: c["verdict"] for c in saved["checks"]}
    assert set(verdicts.values()) <= {"PASS", "FAIL", "n/a", "info"}
    assert [v for name, v in verdicts.items() if "agent-sized" in name] == ["info"]
    assert verdicts["added p50 latency at c=1 vs LiteLLM"] == "n/a"  # LiteLLM was not run
    assert verdicts[f"soak: {cfg.soak_concurrency} concurrent streams complete correctly"] == "PASS"
    assert "| flowbase, tracing on |" in saved["markdown"]
    assert isinstance(saved["noise_warnings"], list)  # reported, never asserted: timings are not tested


def test_a_vm_that_slowed_down_between_targets_is_flagged_even_when_nothing_else_ran() -> None:
    steady = {"direct": measure.TargetResult("direct", cpu_probe_ms=50.0),
              "flowbase": measure.TargetResult("flowbase", cpu_probe_ms=54.0)}
    assert report.noise_warnings(steady) == []
    slowed = {**steady, "litellm": measure.TargetResult("litellm", cpu_probe_ms=75.0)}
    (warning,) = report.noise_warnings(slowed)
    assert "speed changed between targets" in warning and "75 ms" in warning


def test_the_tracing_comparison_takes_the_middle_of_its_rounds_without_leaning_either_way() -> None:
    ab = measure.TracingAB(rounds=4, seconds=1, on_rps=[90.0, 80.0, 100.0, 70.0], off_rps=[100.0] * 4)
    assert ab.ratio_median == pytest.approx(0.85)  # the mean of 0.8 and 0.9, not the upper 0.9
    ab.on_rps.append(95.0)
    ab.off_rps.append(100.0)
    assert ab.ratio_median == pytest.approx(0.9)
