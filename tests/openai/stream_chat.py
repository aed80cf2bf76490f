"""Streams one chat completion with the official `openai` client and prints what it got.

Driven by tests/acceptance_request_streams.rs, once through the relay and once straight to the
origin, to compare the two:

    python3 tests/openai/stream_chat.py --base-url URL [--cafile PEM] [--model NAME]

--base-url is the API's base (e.g. https://127.0.0.1:PORT/v1); with --cafile the TLS server
is verified against that certificate (the relay's dev certificate) and nothing else.
Prints one JSON object: {"chunks": [{"id", "content", "finish_reason"}, ...]}, one entry per
parsed chunk object, in the order the client yielded them. Exit status 0 on success.
"""

import argparse
import json
import ssl

import openai


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--model", default="relay-test")
    args = parser.parse_args()

    http_client = None
    if args.cafile:
        # Trust exactly the relay's certificate (not the system roots, not SSL_CERT_FILE).
        verify = ssl.create_default_context(cafile=args.cafile)
        http_client = openai.DefaultHttpxClient(verify=verify, trust_env=False)
    client = openai.OpenAI(
        base_url=args.base_url,
        api_key="test-key",
        http_client=http_client,
        max_retries=0,
        timeout=60.0,
    )
    stream = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": "Count to five hundred."}],
        stream=True,
    )
    chunks = []
    with stream:
        for chunk in stream:
            choice = chunk.choices[0]
            chunks.append(
                {
                    "id": chunk.id,
                    "content": choice.delta.content,
                    "finish_reason": choice.finish_reason,
                }
            )
    print(json.dumps({"chunks": chunks, "openai": openai.__version__}))


if __name__ == "__main__":
    main()
