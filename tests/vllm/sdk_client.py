"""The OpenAI Python SDK against the gateway, as a client would use it: chat, completions
and a streamed chat with usage. Prints one JSON object with what the SDK saw.

usage: sdk_client.py BASE_URL API_KEY MODEL
"""
import json
import sys

from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60,
                default_headers={"x-session-id": "sdk-session"})
out = {}

chat = client.chat.completions.create(
    model=model, max_tokens=12, messages=[{"role": "user", "content": "Say something short."}])
out["chat"] = {"usage": chat.usage.model_dump(include={"prompt_tokens", "completion_tokens"}),
               "finish_reason": chat.choices[0].finish_reason, "model": chat.model}

completion = client.completions.create(model=model, prompt="The gateway forwards", max_tokens=10)
out["completion"] = {"usage": completion.usage.model_dump(include={"prompt_tokens", "completion_tokens"}),
                     "text_len": len(completion.choices[0].text)}

stream = client.chat.completions.create(
    model=model, max_tokens=16, stream=True, stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "Stream a few words."}])
chunks, usage, text = 0, None, ""
for chunk in stream:
    chunks += 1
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage is not None:
        usage = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens"})
out["stream"] = {"chunks": chunks, "usage": usage, "text_len": len(text)}

try:
    client.chat.completions.create(model="no-such-model", max_tokens=4,
                                   messages=[{"role": "user", "content": "hi"}])
    out["unknown_model"] = {"raised": None}
except Exception as e:  # the SDK raises NotFoundError with the server's message
    out["unknown_model"] = {"raised": type(e).__name__, "status": getattr(e, "status_code", None),
                            "message": str(getattr(e, "message", e))}
print(json.dumps(out))
