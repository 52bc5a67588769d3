"""Completions and chat through the official openai client against the real server."""
import openai
import pytest

MODEL = "smol"
PROMPT = "The capital of France is"
MESSAGES = [{"role": "user", "content": "Name three colors."}]


def test_models_lists_the_served_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]


def test_completion_non_streaming(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0 and c.text and c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert 0 < r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == 8


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16,
                                       temperature=0)
    assert r.object == "chat.completion"
    m = r.choices[0].message
    assert m.role == "assistant" and m.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 16


def test_streamed_text_equals_non_streamed_at_temperature_0(client):
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
            continue
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == full.choices[0].text
    assert finish == full.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens
    assert usage.prompt_tokens == full.usage.prompt_tokens


def test_chat_streamed_equals_non_streamed(client):
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24,
                                          temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24,
                                            temperature=0, stream=True)
    roles, pieces, finish = [], [], None
    for chunk in stream:
        d = chunk.choices[0].delta
        if d.role:
            roles.append(d.role)
        pieces.append(d.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert roles == ["assistant"]
    assert "".join(pieces) == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason


def test_n_samples(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, n=3,
                                  temperature=1.0, seed=11)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.text for c in r.choices)
    assert 3 <= r.usage.completion_tokens <= 36
    # Samples of one request get different seeds (seed + i): at temperature 1 they differ.
    assert len({c.text for c in r.choices}) > 1


def test_n_samples_streaming(client):
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10, n=2,
                                            temperature=0, stream=True)
    texts, finishes = {0: "", 1: ""}, {}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert set(finishes) == {0, 1}
    assert texts[0] == texts[1]  # greedy: both samples are the same


def test_seed_reproducibility(client):
    kw = dict(model=MODEL, prompt="My favourite animal is", max_tokens=16, temperature=0.9,
              top_p=0.95, seed=1234)
    a = client.completions.create(**kw).choices[0].text
    b = client.completions.create(**kw).choices[0].text
    assert a == b
    texts = {client.completions.create(**{**kw, "seed": s}).choices[0].text for s in range(5)}
    assert len(texts) > 1


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0,
                                  logprobs=3)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
    assert "".join(lp.tokens) == r.choices[0].text
    for sampled, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert sampled <= 0.0
        assert 1 <= len(top) <= 3
        # Greedy: the sampled token is the most likely one.
        assert sampled == pytest.approx(max(top.values()), abs=1e-4)
    assert lp.text_offset[0] == 0


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for t in content:
        assert t.logprob <= 0.0
        assert len(t.top_logprobs) == 2
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token or t.bytes is not None


def test_stop_strings(client):
    base = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    text = base.choices[0].text
    # Stop at a word the greedy continuation contains: the text ends right before it.
    words = [w for w in text.split() if len(w) > 2]
    if not words:
        pytest.skip(f"continuation has no usable word: {text!r}")
    stop = words[min(1, len(words) - 1)]
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0,
                                  stop=[stop, "\u2603never"])
    assert r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].text
    assert text.startswith(r.choices[0].text)
    assert r.choices[0].text == text[:text.index(stop)]


def test_loom_extensions_accepted(client):
    r = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=4,
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": True,
                    "min_tokens": 4, "tier": "interactive"})
    assert r.usage.completion_tokens == 4
    assert r.choices[0].finish_reason == "length"


def test_errors_through_the_client(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=-1)
    assert "max_tokens" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)
