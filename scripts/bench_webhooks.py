"""``python -m scripts.bench_webhooks``: POST signed provider webhooks to a running node at a fixed rate.

Open loop: request i is sent at ``start + i / rate`` whether or not earlier ones were answered,
as a provider does, so a slow server shows up as latency rather than as a lower send rate.
Latency is measured from each request's scheduled time (no coordinated omission) and, apart,
from the moment it actually went out. Every request is a new event (a unique MessageSid or
wamid), so each one is published to RabbitMQ with a confirm.

The secrets (TWILIO_AUTH_TOKEN, META_APP_SECRET) and PUBLIC_BASE_URL, which signatures cover,
come from the same Settings as the server (environment and ``.env``). Exit code 1 if any
request failed or was not answered 200, 2 if the run could not be set up.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from infra.settings import Settings

TWILIO_PATH = "/webhooks/twilio"
META_PATH = "/webhooks/meta"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_webhooks", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="the node's base URL (default: http://HOST:PORT from Settings)")
    p.add_argument("--rate", type=float, default=200.0, help="webhooks per second (default: 200)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending (default: 20)")
    p.add_argument(
        "--provider",
        choices=("twilio", "meta", "mixed"),
        default="twilio",
        help="twilio form posts, meta WhatsApp deliveries, or alternate (default: twilio)",
    )
    p.add_argument("--meta-batch", type=int, default=1, help="messages per Meta delivery (default: 1)")
    p.add_argument("--connections", type=int, default=256, help="max open connections (default: 256)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    p.add_argument("--json", action="store_true", help="also print a JSON summary")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.meta_batch < 1 or args.connections < 1:
        p.error("--rate, --duration, --meta-batch and --connections must be positive")
    return args


@dataclass
class Results:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # from the scheduled send time
    service_ms: list[float] = field(default_factory=list)  # from the actual send time
    send_lag_ms: list[float] = field(default_factory=list)  # how late the client sent


class Requests:
    """Signed requests, each a new event, made exactly as the providers make them."""

    def __init__(self, settings: Settings, run: str, meta_batch: int) -> None:
        self.public = settings.public_base_url.rstrip("/")
        self.twilio = RequestValidator(settings.twilio_auth_token.get_secret_value())
        self.meta_secret = settings.meta_app_secret.get_secret_value().encode()
        self.run = run
        self.meta_batch = meta_batch

    def twilio_inbound(self, i: int) -> tuple[str, bytes, dict[str, str]]:
        sid = f"SM{self.run}{i:014x}"
        form = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": f"Bench {i}",
            "MessageType": "text",
            "SmsSid": sid,
            "WaId": f"1555{i % 10_000_000:07d}",
            "SmsStatus": "received",
            "Body": f"benchmark message number {i}",
            "To": "whatsapp:+14155238886",
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": f"whatsapp:+1555{i % 10_000_000:07d}",
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "X-Twilio-Signature": self.twilio.compute_signature(self.public + TWILIO_PATH, form),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return TWILIO_PATH, urlencode(form).encode(), headers

    def meta_whatsapp(self, i: int) -> tuple[str, bytes, dict[str, str]]:
        messages = [
            {
                "from": f"1555{i % 10_000_000:07d}",
                "id": f"wamid.{self.run}.{i}.{j}",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": f"benchmark message number {i}.{j}"},
            }
            for j in range(self.meta_batch)
        ]
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [{"profile": {"name": f"Bench {i}"}, "wa_id": f"1555{i % 10_000_000:07d}"}],
                                "messages": messages,
                            },
                        }
                    ],
                }
            ],
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.meta_secret, body, hashlib.sha256).hexdigest()
        return META_PATH, body, {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}


async def one(session: aiohttp.ClientSession, base: str, request: tuple, scheduled: float, out: Results) -> None:
    path, body, headers = request
    sent = time.perf_counter()
    try:
        async with session.post(base + path, data=body, headers=headers) as resp:
            await resp.read()
            out.statuses[str(resp.status)] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        out.statuses[type(exc).__name__] += 1
        return
    done = time.perf_counter()
    out.latencies_ms.append((done - scheduled) * 1000)
    out.service_ms.append((done - sent) * 1000)
    out.send_lag_ms.append((sent - scheduled) * 1000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summary_line(name: str, values: list[float]) -> str:
    p = {q: percentile(values, q) for q in (50, 95, 99)}
    return f"{name:<28} p50 {p[50]:7.1f}  p95 {p[95]:7.1f}  p99 {p[99]:7.1f}  max {max(values, default=0):7.1f} ms"


async def run(args: argparse.Namespace, settings: Settings) -> int:
    base = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    requests = Requests(settings, secrets.token_hex(4), args.meta_batch)
    makers = {
        "twilio": [requests.twilio_inbound],
        "meta": [requests.meta_whatsapp],
        "mixed": [requests.twilio_inbound, requests.meta_whatsapp],
    }[args.provider]
    total = int(args.rate * args.duration)
    out = Results()
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(base + "/health") as resp:
            if resp.status != 200:
                print(f"{base}/health answered {resp.status}: {await resp.text()}", file=sys.stderr)
                return 2
        # Sign everything up front so the schedule is not disturbed by the client's own work.
        prepared = [makers[i % len(makers)](i) for i in range(total)]
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.2
        for i, request in enumerate(prepared):
            scheduled = start + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, base, request, scheduled, out)))
        sending_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
        elapsed_s = time.perf_counter() - start

    events = total * (args.meta_batch if args.provider == "meta" else 1)
    if args.provider == "mixed":
        events = (total + 1) // 2 + total // 2 * args.meta_batch
    ok = out.statuses.get("200", 0)
    print(f"target        {args.rate:.0f} webhooks/s for {args.duration:.0f} s ({args.provider}) -> {base}")
    print(f"sent          {total} requests ({events} events) in {sending_s:.2f} s: {total / sending_s:.1f} req/s")
    print(f"answered      {ok} x 200 in {elapsed_s:.2f} s: {ok / elapsed_s:.1f} req/s")
    print(f"status codes  {dict(sorted(out.statuses.items()))}")
    print(summary_line("latency (from schedule)", out.latencies_ms))
    print(summary_line("latency (from send)", out.service_ms))
    print(summary_line("client send lag", out.send_lag_ms))
    if args.json:
        print(
            json.dumps(
                {
                    "requests": total,
                    "events": events,
                    "sendRate": total / sending_s,
                    "answeredRate": ok / elapsed_s,
                    "statuses": dict(out.statuses),
                    "latencyMs": {f"p{q}": percentile(out.latencies_ms, q) for q in (50, 95, 99)}
                    | {"max": max(out.latencies_ms, default=0)},
                }
            )
        )
    return 0 if ok == total else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    if args.provider in ("twilio", "mixed") and not settings.twilio_auth_token.get_secret_value():
        print("TWILIO_AUTH_TOKEN is not set (environment or .env)", file=sys.stderr)
        return 2
    if args.provider in ("meta", "mixed") and not settings.meta_app_secret.get_secret_value():
        print("META_APP_SECRET is not set (environment or .env)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, settings))
    except aiohttp.ClientError as exc:
        print(f"cannot reach the node: {exc!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
