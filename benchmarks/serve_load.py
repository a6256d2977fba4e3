"""Serving under load: `gptclassify serve` on 127.0.0.1 against `Classifier.predict`.

A GPT-2-small-shaped classifier (random weights, seed 123, a 2-class head) is written once
as a model folder. The server (`python -m gptclassify serve`) runs in a child process; this
process loads the same folder too, for the offline figures, and is the load generator.

For each concurrency level (default 1, 8, 32, 128), with the server idle, it first times
`Classifier.predict` over the level's messages in one call (and, before the lone level, each
message alone: its single-message compute time). Then that many closed-loop clients, each
one keep-alive connection, send the same messages as single-message `POST /predict`
requests, one after the other; a level sends `--requests` messages (at least 4 per client)
and stops early after `--duration` seconds. Offline and served figures of a level are taken
minutes apart at most, so a shared machine's drifting load affects both alike.

It prints, per level, throughput (answered requests per second) against the offline
figure, latency percentiles, the 429s (counted apart: the queue was full) and failures
(anything else, connection errors included), and from the server's /metrics the texts per
model pass, the time per pass, how busy the model was and the padding; then the checks
against the targets.

The overload level (`--overload 4`, after the others): 4x the clients the machine can serve,
that is 4 x the best level's answered requests per second x the server's `--timeout` (the
requests it can answer within one timeout), each sending single messages for
`--overload-duration` seconds and, on a 429, waiting the Retry-After it is told (as a
client that respects it does). It reports the 200 / 429 / 503 counts, how fast the 429s
came, the texts the server computed for requests that had gone (wasted) or dropped unrun,
and the goodput (answered requests per second) against the best unloaded level's. The client
is a small asyncio HTTP/1.1 client, cheap beside a model pass, but on this machine it shares
the CPU with the server: `--client-nice 19` runs it (every level) at the lowest priority, so
that it takes only the CPU the server leaves, as clients on other machines would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import common

LABELS = ["ham", "spam"]
MARKER = "serve-model.json"


# ---- the model folder ---------------------------------------------------------------------


def ensure_model(directory: Path, weights: Path, seed: int) -> Path:
    """A gptclassify model folder: GPT-2 small (random) with a seeded 2-class head."""
    if common.cached(directory, {"seed": seed}, "config.json", MARKER):
        return directory
    import torch

    from gptclassify.classifier import GPTClassifier
    from gptclassify.data.encode import InputPolicy
    from gptclassify.predict import Classifier
    from gptclassify.weights import load_pretrained

    print(f"Writing the served model folder to {directory} ...", flush=True)
    torch.manual_seed(seed)
    model = GPTClassifier(load_pretrained(str(weights)), len(LABELS))
    clf = Classifier(model, LABELS, InputPolicy(max_length=1024, pad_length=None))
    return common.write_folder(directory, {"seed": seed, "base": str(weights)}, clf.save, MARKER)


# ---- offline, in this process ------------------------------------------------------------------


class Offline:
    """`Classifier.predict` on the same model folder, in the driver process, measured right
    before each level while the server idles: a shared machine's load drifts, and a figure
    taken minutes earlier would compare the server with another machine state."""

    def __init__(self, model: Path, precision: str, threads: int, batch_size: int) -> None:
        import torch

        from gptclassify.predict import Classifier

        torch.set_num_threads(threads)
        self.clf = Classifier.load(model, precision=precision)
        self.batch_size = batch_size

    def warm_up(self, texts: list[str]) -> None:
        """Every shape the runtime will see, once (the server has been warmed up alike)."""
        self.clf.predict(texts, batch_size=self.batch_size)
        for text in texts:
            self.clf.predict_proba([text])

    def throughput(self, texts: list[str]) -> float:
        """Messages per second of one `predict` call over `texts`."""
        t = time.perf_counter()
        self.clf.predict(texts, batch_size=self.batch_size)
        return len(texts) / (time.perf_counter() - t)

    def singles(self, texts: list[str]) -> list[float]:
        """Seconds of `predict_proba([text])` per text: the single-message compute time."""
        out = []
        for text in texts:
            t = time.perf_counter()
            self.clf.predict_proba([text])
            out.append(time.perf_counter() - t)
        return out

    def padded_per_real(self, texts: list[str]) -> float:
        """Padded over real tokens of `predict`'s batches (longest first, `batch_size` each)."""
        from gptclassify.data.encode import encode

        lengths = sorted(encode(texts, self.clf.policy).lengths.tolist(), reverse=True)
        b = self.batch_size
        padded = sum(lengths[i] * len(lengths[i : i + b]) for i in range(0, len(lengths), b))
        return padded / sum(lengths)


# ---- the load generator --------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read status and body."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_with_headers(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            headers[name] = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data, headers

    async def try_post(
        self, path: str, body: bytes, failures: list[str]
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """`post_with_headers`, or None when the connection broke: the failure noted in
        `failures` and the connection closed (the next post opens a new one)."""
        try:
            return await self.post_with_headers(path, body)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            self.close()
            return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(
    host: str, port: int, clients: int, duration: float, send: Callable[..., Awaitable[bool]]
) -> float:
    """`clients` closed-loop clients, each on its own connection, call `await send(conn,
    stop_at)` until it returns False or `duration` seconds are over; returns the wall time."""
    start = time.perf_counter()
    stop_at = start + duration

    async def client() -> None:
        conn = Connection(host, port)
        try:
            while time.perf_counter() < stop_at and await send(conn, stop_at):
                pass
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start


async def run_level(
    host: str, port: int, texts: list[str], clients: int, duration: float
) -> dict[str, Any]:
    """`clients` closed-loop clients share `texts` (each sent once, in order)."""
    bodies = [json.dumps({"inputs": t}).encode() for t in texts]
    latencies: list[float | None] = [None] * len(bodies)
    statuses: list[int | None] = [None] * len(bodies)
    failures: list[str] = []
    next_index = 0

    async def send(conn: Connection, stop_at: float) -> bool:
        nonlocal next_index
        if next_index >= len(bodies):
            return False
        i = next_index
        next_index += 1
        t = time.perf_counter()
        got = await conn.try_post("/predict", bodies[i], failures)
        if got is None:
            statuses[i] = -1
            return True
        latencies[i] = time.perf_counter() - t
        statuses[i] = got[0]
        return True

    wall = await closed_loop(host, port, clients, duration, send)
    sent = [i for i, s in enumerate(statuses) if s is not None]
    ok = [i for i in sent if statuses[i] == 200]
    lat = sorted(latencies[i] for i in ok)  # type: ignore[type-var]
    return {
        "clients": clients,
        "sent": len(sent),
        "ok": len(ok),
        "rejected_429": sum(statuses[i] == 429 for i in sent),
        "failed": sum(statuses[i] not in (200, 429) for i in sent),
        "failures": failures[:5],
        "wall_s": wall,
        "req_per_s": len(ok) / wall,
        "p50_ms": 1000 * _pct(lat, 50),
        "p95_ms": 1000 * _pct(lat, 95),
        "p99_ms": 1000 * _pct(lat, 99),
        "max_ms": 1000 * lat[-1] if lat else None,
        "latency_s": [latencies[i] for i in range(len(bodies))],
    }


async def run_overload(
    host: str, port: int, texts: list[str], clients: int, duration: float
) -> dict[str, Any]:
    """`clients` closed-loop clients send `texts` (cycled) for `duration` seconds; a 429 makes
    its client wait the Retry-After the server sent (at most what is left of the level)."""
    bodies = [json.dumps({"inputs": t}).encode() for t in texts]
    counts: dict[str, int] = {"200": 0, "429": 0, "503": 0, "other": 0}
    ok_latency: list[float] = []
    refused_latency: list[float] = []
    failures: list[str] = []
    next_index = 0

    async def send(conn: Connection, stop_at: float) -> bool:
        nonlocal next_index
        body = bodies[next_index % len(bodies)]
        next_index += 1
        t = time.perf_counter()
        got = await conn.try_post("/predict", body, failures)
        if got is None:
            counts["other"] += 1
            return True
        status, data, headers = got
        took = time.perf_counter() - t
        key = str(status) if str(status) in counts else "other"
        counts[key] += 1
        if status == 200:
            ok_latency.append(took)
        elif status == 429:
            refused_latency.append(took)
            retry = float(headers.get("retry-after", "1"))
            await asyncio.sleep(max(0.0, min(retry, stop_at - time.perf_counter())))
        elif status != 503:
            failures.append(f"{status}: {data[:200]!r}")
        return True

    wall = await closed_loop(host, port, clients, duration, send)
    ok_latency.sort()
    refused_latency.sort()
    return {
        "clients": clients,
        "counts": counts,
        "failures": failures[:5],
        "wall_s": wall,
        "goodput": counts["200"] / wall,
        "ok_p50_ms": 1000 * _pct(ok_latency, 50),
        "ok_p99_ms": 1000 * _pct(ok_latency, 99),
        "refused_p50_ms": 1000 * _pct(refused_latency, 50),
        "refused_p99_ms": 1000 * _pct(refused_latency, 99),
    }


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, int(-(-q * len(values) // 100)) - 1))
    return values[k]


def scrape(url: str) -> dict[str, float]:
    """The server's pass counters so far: texts, passes, padded and real tokens."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    names = (
        "gptclassify_batch_texts_sum",
        "gptclassify_batch_texts_count",
        "gptclassify_batch_padded_tokens_sum",
        "gptclassify_batch_duration_seconds_sum",
        "gptclassify_tokens_total",
        "gptclassify_wasted_texts_total",
        "gptclassify_dropped_texts_total",
        'gptclassify_refused_texts_total{reason="wait"}',
        'gptclassify_refused_texts_total{reason="queue"}',
        'gptclassify_refused_texts_total{reason="busy"}',
    )
    for name in names:
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


# ---- driver ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, model: Path, out: Path) -> tuple[subprocess.Popen, str]:
    port = args.port or free_port()
    cmd = common.gptclassify(
        "serve", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "--precision", args.precision,
        "--max-batch", str(args.max_batch),
        "--max-batch-tokens", str(args.max_batch_tokens),
        "--max-wait-ms", str(args.max_wait_ms),
        "--max-queue", str(args.max_queue),
        "--timeout", str(args.timeout),
        "--log-level", "warning", "--no-access-log",
    )  # fmt: skip
    if args.pass_overhead_tokens is not None:
        cmd += ["--pass-overhead-tokens", str(args.pass_overhead_tokens)]
    log = open(out / "serve_load-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=common.child_env(args.threads)
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start; see {out / 'serve_load-server.log'}")
        time.sleep(0.25)


def report(levels: list[dict[str, Any]], singles: list[float], batch_size: int) -> str:
    headers = [
        "clients", "sent", "ok", "429", "failed", "req/s", "offline msgs/s", "vs offline",
        "p50 ms", "p95 ms", "p99 ms", "max ms", "texts/pass", "pass ms", "busy", "padded/real",
    ]  # fmt: skip
    rows = [
        [
            r["clients"],
            r["sent"],
            r["ok"],
            r["rejected_429"],
            r["failed"],
            r["req_per_s"],
            r["offline_msgs_per_s"],
            f"{100 * r['req_per_s'] / r['offline_msgs_per_s']:.0f}%",
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["texts_per_pass"],
            r["pass_ms"],
            f"{100 * r['busy']:.0f}%",
            f"{r['padded_per_real']:.2f} ({r['offline_padded_per_real']:.2f})",
        ]  # fmt: skip
        for r in levels
    ]
    lines = [
        common.format_table(headers, rows),
        "",
        f"offline msgs/s: Classifier.predict over the level's messages in one call (batch size "
        f"{batch_size}), in the driver, just before the level. busy: the server's time in "
        "model passes / the level's wall time. padded/real: the server's padded tokens per "
        "real token (offline's in brackets); the PyTorch runtime computes the real tokens "
        "only, padding costs it attention width.",
    ]
    if singles:
        lines.append(
            f"single-message compute (Classifier.predict_proba([text]), the lone level's first "
            f"{len(singles)} messages): median {1000 * statistics.median(singles):.1f} ms, "
            f"p99 {1000 * _pct(sorted(singles), 99):.1f} ms"
        )
    lines += ["", *checks(levels, singles)]
    return "\n".join(lines)


def checks(levels: list[dict[str, Any]], singles: list[float]) -> list[str]:
    out = []
    by = {r["clients"]: r for r in levels}
    if 32 in by:
        r = by[32]
        share = r["req_per_s"] / r["offline_msgs_per_s"]
        out.append(
            f"32 clients: {r['req_per_s']:.1f} req/s = {100 * share:.0f}% of offline "
            f"(target >= 70%: {'met' if share >= 0.7 else 'NOT met'})"
        )
    if 1 in by and singles:
        lone = by[1]
        # each lone request against the same message's own compute time
        ratios = sorted(
            lat / single
            for lat, single in zip(lone["latency_s"], singles, strict=False)
            if lat is not None
        )
        p99_ratio = _pct(ratios, 99)
        p99_single = _pct(sorted(singles), 99)
        out.append(
            f"1 client: p99 of latency / that message's single-message compute = "
            f"{p99_ratio:.2f}x (target < 3x: {'met' if p99_ratio < 3 else 'NOT met'}); "
            f"p99 latency {lone['p99_ms']:.1f} ms vs p99 compute {1000 * p99_single:.1f} ms "
            f"({lone['p99_ms'] / (1000 * p99_single):.2f}x)"
        )
    if 128 in by:
        r = by[128]
        lost = r["sent"] - r["ok"] - r["rejected_429"] - r["failed"]
        fine = r["failed"] == 0 and lost == 0
        out.append(
            f"128 clients: {r['ok']} answered, {r['rejected_429']} refused with 429 (queue "
            f"full), {r['failed']} failed, {lost} lost (target: none failed or lost: "
            f"{'met' if fine else 'NOT met'})"
        )
    return out


def overload_report(r: dict[str, Any], args: argparse.Namespace) -> str:
    c = r["counts"]
    share = r["goodput"] / r["peak_req_per_s"]
    wasted_share = r["wasted"] / r["computed"] if r["computed"] else 0.0
    return "\n".join(
        [
            f"overload: {r['clients']} clients ({args.overload:g}x what the machine serves "
            f"within --timeout {args.timeout:g} s) for {r['wall_s']:.0f} s, each waiting the "
            "Retry-After of a 429",
            f"  answered 200: {c['200']}, refused 429: {c['429']} (before the body was read "
            f"{r.get('refused_busy', 0):.0f}, predicted wait {r['refused_wait']:.0f} texts, "
            f"queue full {r['refused_queue']:.0f}), timed out 503: {c['503']}, "
            f"other: {c['other']}",
            f"  latency of the 200s p50 {r['ok_p50_ms']:.0f} ms, p99 {r['ok_p99_ms']:.0f} ms; "
            f"of the 429s p50 {r['refused_p50_ms']:.1f} ms, p99 {r['refused_p99_ms']:.1f} ms",
            f"  texts computed {r['computed']:.0f}, of which wasted (their request had gone) "
            f"{r['wasted']:.0f} ({100 * wasted_share:.1f}%); dropped unrun {r['dropped']:.0f}",
            f"  goodput {r['goodput']:.1f} req/s = {100 * share:.0f}% of the best unloaded "
            f"level's {r['peak_req_per_s']:.1f} req/s (target >= 90%: "
            f"{'met' if share >= 0.9 else 'NOT met'})",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument(
        "--requests", type=int, default=400, help="Requests per level (at least 4 per client)."
    )
    p.add_argument("--duration", type=float, default=60.0, help="Seconds per level, at most.")
    p.add_argument(
        "--single",
        type=int,
        default=200,
        help="Messages timed alone offline (the lone level's first ones).",
    )
    p.add_argument(
        "--offline-batch-size", type=int, default=32, help="Classifier.predict's batch size."
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--max-batch", type=int, default=64, help="serve --max-batch")
    p.add_argument("--max-batch-tokens", type=int, default=4096, help="serve --max-batch-tokens")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="serve --max-wait-ms")
    p.add_argument("--max-queue", type=int, default=1024, help="serve --max-queue")
    p.add_argument(
        "--pass-overhead-tokens",
        type=float,
        default=None,
        help="serve --pass-overhead-tokens (default: the server measures and fits it)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="serve --timeout")
    p.add_argument(
        "--overload",
        type=float,
        default=0.0,
        help="Then an overload level: this many times the clients the machine can serve "
        "(best level's req/s x --timeout); 0: none.",
    )
    p.add_argument(
        "--overload-duration", type=float, default=30.0, help="Seconds of the overload level."
    )
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument(
        "--seed", type=int, default=123, help="Seed of the weights, head and message order."
    )
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="Run the load generator (this process, after starting the server) at this nice "
        "level: 19 stands in for clients on other machines, taking only the CPU the server "
        "leaves (the offline figures are measured here too, with the server idle)",
    )
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = p.parse_args(argv)
    if min(args.concurrency) < 1 or args.requests < 1 or args.duration <= 0:
        p.error("--concurrency and --requests must be >= 1, --duration > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    common.setup_offline_env()
    args = parse_args(argv)

    from gptclassify.data.sms_spam import prepare_sms_spam

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    weights = common.ensure_gpt2_weights(out / f"gpt2-small-random-seed{args.seed}", args.seed)
    model = ensure_model(out / f"serve-model-seed{args.seed}", weights, args.seed)
    splits = prepare_sms_spam(source=str(common.DEFAULT_SMS_SOURCE), seed=args.seed)
    pool = [t for _, part in splits.parts() for t in part.texts]
    random.Random(args.seed).shuffle(pool)
    per_level = {c: max(args.requests, 4 * c) for c in args.concurrency}
    n = max(per_level.values())
    texts = (pool * (n // len(pool) + 1))[:n]
    texts_path = out / "serve_load-texts.json"
    texts_path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")

    print("Starting the server ...", flush=True)
    proc, url = start_server(args, model, out)
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    if args.client_nice:
        # The server started at our priority; from here on this process is only the clients.
        os.nice(args.client_nice)
    levels = []
    singles: list[float] = []
    try:
        print(f"Offline: loading the model here, warming up over {n} messages ...", flush=True)
        offline = Offline(model, args.precision, args.threads, args.offline_batch_size)
        offline.warm_up(texts)
        # the server's warm-up: the lone level's messages once, and a burst from 32 clients
        lone = per_level.get(1, args.single)
        asyncio.run(run_level(host, port, texts[:lone], 1, args.duration))
        asyncio.run(run_level(host, port, texts[: 4 * 32], 32, args.duration))
        with urllib.request.urlopen(url + "/info", timeout=10) as r:
            overhead_start = json.loads(r.read())["pass_overhead_tokens"]
        for c in args.concurrency:
            sent = texts[: per_level[c]]
            offline_rate = offline.throughput(sent)
            if c == 1:
                singles = offline.singles(sent[: args.single])
            before = scrape(url)
            print(f"{c} client(s): {len(sent)} requests ...", flush=True)
            level = asyncio.run(run_level(host, port, sent, c, args.duration))
            after = scrape(url)

            def delta(name: str) -> float:
                return after[name] - before[name]  # noqa: B023 - used at once

            passes = delta("gptclassify_batch_texts_count")
            real = delta("gptclassify_tokens_total")
            level.update(
                offline_msgs_per_s=offline_rate,
                offline_padded_per_real=offline.padded_per_real(sent),
                texts_per_pass=delta("gptclassify_batch_texts_sum") / passes if passes else None,
                padded_per_real=delta("gptclassify_batch_padded_tokens_sum") / real
                if real
                else None,
                pass_ms=1000 * delta("gptclassify_batch_duration_seconds_sum") / passes
                if passes
                else None,
                busy=delta("gptclassify_batch_duration_seconds_sum") / level["wall_s"],
            )
            levels.append(level)
            print(
                f"  {level['req_per_s']:.1f} req/s (offline {offline_rate:.1f} msgs/s), "
                f"p50 {level['p50_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms, "
                f"429 {level['rejected_429']}, failed {level['failed']}",
                flush=True,
            )
        overload = None
        if args.overload > 0 and levels:
            peak = max(r["req_per_s"] for r in levels)
            clients = max(1, round(args.overload * peak * args.timeout))
            print(
                f"Overload: {clients} clients ({args.overload:g} x {peak:.1f} req/s x "
                f"{args.timeout:g} s) for {args.overload_duration:g} s ...",
                flush=True,
            )
            before = scrape(url)
            overload = asyncio.run(run_overload(host, port, texts, clients, args.overload_duration))
            after = scrape(url)
            overload.update(
                peak_req_per_s=peak,
                computed=after["gptclassify_batch_texts_sum"]
                - before["gptclassify_batch_texts_sum"],
                **{
                    key: after[name] - before[name]
                    for key, name in (
                        ("wasted", "gptclassify_wasted_texts_total"),
                        ("dropped", "gptclassify_dropped_texts_total"),
                        ("refused_wait", 'gptclassify_refused_texts_total{reason="wait"}'),
                        ("refused_queue", 'gptclassify_refused_texts_total{reason="queue"}'),
                        ("refused_busy", 'gptclassify_refused_texts_total{reason="busy"}'),
                    )
                },
            )
            print(f"  {overload['counts']}, goodput {overload['goodput']:.1f} req/s", flush=True)
        with urllib.request.urlopen(url + "/info", timeout=10) as r:
            overhead_end = json.loads(r.read())["pass_overhead_tokens"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    info = common.machine_info()
    header = (
        f"Serving: GPT-2 small (random weights, seed {args.seed}), single-message POST /predict "
        f"on 127.0.0.1, {info['cpu']}, {args.threads} thread(s), torch {info['torch']}, "
        f"{offline.clf.runtime.describe()}; serve --max-batch {args.max_batch} --max-batch-tokens "
        f"{args.max_batch_tokens} --max-wait-ms {args.max_wait_ms:g} --max-queue {args.max_queue} "
        f"{'' if args.pass_overhead_tokens is None else f'--pass-overhead-tokens {args.pass_overhead_tokens:g} '}"
        f"--timeout {args.timeout:g} (pass overhead after warm-up: {overhead_start:g} tokens, "
        f"at the end: {overhead_end:g}); load generator at nice {args.client_nice}"
    )
    body = report(levels, singles, args.offline_batch_size)
    if overload is not None:
        body += "\n\n" + overload_report(overload, args)
    data = {
        "args": vars(args),
        "machine": info,
        "single_s": singles,
        "levels": levels,
        "overload": overload,
    }
    common.publish(out, "serve_load", header, body, t_start, data)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
