"""Drives `traceforge serve` with the real Python openai SDK, as a Python test suite would.

Usage: openai_chat.py BASE_URL API_KEY PROMPT STREAMED_PROMPT

Makes one chat completion and one streamed chat completion, and prints one JSON object:
{"text", "finish_reason", "stream_text", "stream_chunks", "outcome"}, or, when the server
refuses a request, {"error_status", "error_code"}.
"""
import json
import sys

import openai

base_url, api_key, prompt, streamed_prompt = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
result = {}
try:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    completion = raw.parse()
    result["outcome"] = raw.headers.get("x-traceforge")
    result["text"] = completion.choices[0].message.content
    result["finish_reason"] = completion.choices[0].finish_reason
    chunks = []
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": streamed_prompt}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks.append(chunk.choices[0].delta.content)
    result["stream_text"] = "".join(chunks)
    result["stream_chunks"] = len(chunks)
except openai.APIStatusError as error:
    body = error.body if isinstance(error.body, dict) else {}
    result = {"error_status": error.status_code, "error_code": body.get("code")}
print(json.dumps(result))
