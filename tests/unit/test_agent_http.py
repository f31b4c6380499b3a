"""The OpenAI-compatible HTTP backend against a small stand-in server on 127.0.0.1 that speaks the
chat-completions dialect `vllm serve` does (continue_final_message, include_stop_str_in_output, token_ids)."""

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from thyme_core.agent import Agent, AgentConfig
from thyme_core.agent.backends.openai_http import OpenAIBackend
from thyme_core.agent.backends.scripted import script_of
from thyme_core.agent.codec import ByteCodec
from thyme_core.base.errors import ThymeError

RESPONSE = '''<think>Crop.
<code>
```python
from PIL import Image
out = "/mnt/data/temp_processed_images/a.png"
Image.open(image_path).crop((0, 0, 100, 100)).save(out)
print(out)
```
</code>
<sandbox_output>/mnt/data/temp_processed_images/a.png</sandbox_output>
Red.</think><answer>A</answer>'''


class StandIn(BaseHTTPRequestHandler):
    """Continues the script from the assistant text it is sent (sandbox outputs removed), like a model."""

    requests: list = []
    with_token_ids = True

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        last = body["messages"][-1]
        so_far = ""
        if last["role"] == "assistant":
            so_far = script_of("".join(p.get("text", "img") for p in last["content"]))
        rest = script_of(RESPONSE)[len(so_far):]
        hits = [(rest.find(s) + len(s), s) for s in body["stop"] if s in rest]
        end, stop = min(hits) if hits else (len(rest), None)
        choice = {"index": 0, "message": {"role": "assistant", "content": rest[:end]},
                  "finish_reason": "stop", "stop_reason": stop}
        if type(self).with_token_ids:
            choice["token_ids"] = ByteCodec().encode(rest[:end]) + ([] if stop else [2])
        data = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture(scope="module")
def pool():
    from thyme_core.sandbox import SandboxPool

    with SandboxPool(isolation="bwrap") as p:
        yield p


def png():
    buf = io.BytesIO()
    Image.new("RGB", (256, 200), (220, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("with_ids", [True, False])
def test_http_trajectory_continues_the_assistant_turn_with_the_image(server, pool, home, with_ids):
    StandIn.requests.clear()
    StandIn.with_token_ids = with_ids
    backend = OpenAIBackend(server, ByteCodec(), served_model="thyme-7b")
    traj = Agent(backend, home, AgentConfig(), pool=pool).run("h1", png(), "Colour? A. red B. blue")
    assert traj.answer == "A" and traj.stop_reason == "answer"
    generated = [t for t, m in zip(traj.ledger.ids, traj.ledger.mask) if m]
    assert ByteCodec().decode(generated) == script_of(RESPONSE)

    (_, first), (_, second) = StandIn.requests
    assert first["model"] == "thyme-7b" and first["stop"] == ["</code>", "</answer>"]
    assert first["include_stop_str_in_output"] and "continue_final_message" not in first
    assert set(first["logit_bias"]) == {str(t) for t in ByteCodec().banned_ids}
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assistant = second["messages"][-1]["content"]
    kinds = [p["type"] for p in assistant]
    assert kinds == ["text", "image_url", "text"]  # model text, the fed-back image, "</sandbox_output>"
    url = assistant[1]["image_url"]["url"]
    fed = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    slot = traj.ledger.images[1]
    assert fed.size == (slot.width, slot.height)  # sent at exactly the size the ledger counts
    user_image = second["messages"][1]["content"][0]
    assert user_image["type"] == "image_url" and user_image["image_url"]["url"].startswith("data:image/png;base64,")


def test_http_errors_are_reported_clearly(server):
    backend = OpenAIBackend(server.replace("/v1", "/nope"), ByteCodec())
    from thyme_core.agent.backends.base import GenerationRequest

    req = GenerationRequest([], [], [{"role": "user", "content": "hi"}], [], "", 8, 0.0, ("</answer>",))
    with pytest.raises(ThymeError, match="HTTP 404"):
        backend.generate(req)
