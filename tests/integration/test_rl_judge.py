"""The judge client against a real HTTP server on 127.0.0.1 that speaks chat completions, with switchable
behaviours: a verdict, malformed JSON, a hang past the timeout, 5xx a number of times then a verdict, 5xx
forever, a 401, and a reply that is no verdict. One test per guarantee; about 2 s in all."""

import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from tests.fakes import StandIn
from thyme_core.base.errors import ThymeError
from thyme_core.rl.judge import Judge, JudgeConfig, JudgeFailure, accuracy_messages
from thyme_core.rl.rewards import accuracy_reward, combined_reward


@pytest.fixture(scope="module")
def url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def judge_with(url, plan, **overrides):
    deadline = time.monotonic() + 2
    while StandIn.in_flight and time.monotonic() < deadline:  # an earlier test's hung request, still sleeping
        time.sleep(0.02)
    StandIn.plan, StandIn.seen, StandIn.peak = list(plan), [], 0
    cfg = dict(base_url=url, model="judge-7b", api_key="sk-test", timeout_s=0.3, max_retries=2,
               backoff_s=0.01, backoff_max_s=0.05)
    cfg.update(overrides)
    return Judge(JudgeConfig(**cfg))


QUESTION = accuracy_messages("What is shown?", "Eiffel Tower", "the tower in Paris")


def test_success_sends_an_openai_chat_request(url):
    verdict = judge_with(url, ["Yes."]).ask(QUESTION)
    assert verdict.value == 1.0 and verdict.reason == "" and verdict.attempts == 1
    path, body, auth = StandIn.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-7b" and body["temperature"] == 0.0 and body["messages"] == QUESTION


def test_malformed_json_is_missing_and_not_retried(url):
    verdict = judge_with(url, ["malformed"]).ask(QUESTION)
    assert verdict.value is None and verdict.reason == JudgeFailure.MALFORMED
    assert len(StandIn.seen) == 1  # at temperature 0 the same question gets the same bad reply


def test_a_reply_that_is_no_verdict_is_missing(url):
    verdict = judge_with(url, ["Well, it depends."]).ask(QUESTION)
    assert verdict.value is None and verdict.reason == JudgeFailure.NO_VERDICT and "depends" in verdict.detail


def test_timeout_is_retried_then_missing(url):
    t0 = time.monotonic()
    verdict = judge_with(url, ["hang"], max_retries=1).ask(QUESTION)
    assert verdict.value is None and verdict.reason == JudgeFailure.TIMEOUT and verdict.attempts == 2
    assert time.monotonic() - t0 < 1.5  # two timeouts of 0.3 s, not the server's 0.6 s each


def test_timeout_then_success(url):
    verdict = judge_with(url, ["hang", "no"]).ask(QUESTION)
    assert verdict.value == 0.0 and verdict.attempts == 2


def test_5xx_then_success_is_retried(url):
    verdict = judge_with(url, [503, 500, "yes"]).ask(QUESTION)
    assert verdict.value == 1.0 and verdict.attempts == 3 and len(StandIn.seen) == 3


def test_5xx_until_give_up_is_a_missing_reward_with_its_reason(url):
    judge = judge_with(url, [502], max_retries=2)
    got = accuracy_reward(["<answer>the tower in Paris</answer>", "<answer>12</answer>"],
                          solution=["Eiffel Tower", "12"], question=["What is shown?", "3*4?"], judge=judge)
    assert got == [None, 1.0] and got.reasons == [JudgeFailure.HTTP_ERROR, ""]
    assert len(StandIn.seen) == 3  # one try and two retries, only for the open-ended answer


def test_4xx_is_not_retried(url):
    verdict = judge_with(url, [401]).ask(QUESTION)
    assert verdict.reason == JudgeFailure.HTTP_ERROR and "401" in verdict.detail and len(StandIn.seen) == 1


def test_refused_connection_is_its_own_reason():
    judge = Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", timeout_s=0.3, max_retries=1, backoff_s=0.01))
    verdict = judge.ask(QUESTION)
    assert verdict.value is None and verdict.reason == JudgeFailure.CONNECTION and verdict.attempts == 2


def test_concurrency_limit_holds_and_order_is_kept(url):
    judge = judge_with(url, ["slow:yes"], concurrency=3)
    verdicts = judge.ask_many([QUESTION] * 9)
    assert [v.value for v in verdicts] == [1.0] * 9
    assert 1 < StandIn.peak <= 3


def test_combined_reward_through_the_real_client(url):
    judge = judge_with(url, ["yes"])
    got = combined_reward(["<think>3*4 is 12</think><answer>12</answer>"], solution=["12"], question=["3*4?"],
                          judge=judge)
    assert got == [2.0] and len(StandIn.seen) == 1  # accuracy by rule, consistency by the judge


def test_config_from_env_and_missing_key(monkeypatch, url):
    monkeypatch.setenv("THYME_JUDGE_URL", url)
    monkeypatch.setenv("THYME_JUDGE_MODEL", "m")
    monkeypatch.delenv("THYME_JUDGE_API_KEY", raising=False)
    cfg = JudgeConfig.from_env()
    assert (cfg.base_url, cfg.model, cfg.resolved_key()) == (url, "m", None)
    with pytest.raises(ThymeError, match="THYME_JUDGE_API_KEY"):
        JudgeConfig.from_env(require_key=True)
    monkeypatch.setenv("THYME_JUDGE_API_KEY", "sk-env")
    assert JudgeConfig.from_env(require_key=True).resolved_key() == "sk-env"
    with pytest.raises(ThymeError, match="http"):
        JudgeConfig(base_url="")
