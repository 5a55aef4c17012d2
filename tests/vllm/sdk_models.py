"""The OpenAI Python SDK with ONE base URL (the gateway's /v1) reaching routes by model name.
Prints one JSON object with what the SDK saw.

usage: sdk_models.py BASE_URL API_KEY MODEL...
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
out = {"listed": sorted(m.id for m in client.models.list().data), "served_by": {}, "streamed_by": {}}

for model in models:
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    chat = raw.parse()
    out["served_by"][model] = {"instance": raw.headers.get("x-standin-instance"), "model": chat.model}
    stream = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=8, stream=True, messages=[{"role": "user", "content": "hi"}])
    chunks = sum(1 for _ in stream.parse())
    out["streamed_by"][model] = {"instance": stream.headers.get("x-standin-instance"), "chunks": chunks}

out["retrieved"] = client.models.retrieve(models[0]).id
try:
    client.chat.completions.create(model="no-such-model-anywhere", messages=[{"role": "user", "content": "hi"}])
    out["unknown"] = {"raised": None}
except openai.APIStatusError as e:
    out["unknown"] = {"raised": type(e).__name__, "status": e.status_code, "code": e.code, "param": e.param}
print(json.dumps(out))
