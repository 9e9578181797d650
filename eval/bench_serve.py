"""Load on `rag serve` with the real default models on the demo corpus, side by side with the Python API and the CLI,
and a re-index in the middle of the load. Loopback only, bounded in time (a few minutes plus --duration).

    nice -n 5 python -m eval.bench_serve                     # 16 search + 4 ask clients for 60 s
    python -m eval.bench_serve --duration 20 --out bench-out/serve.json

Rows: the Python API in process and the server with one client, taking turns call by call (so that both see the
same machine); the CLI (one process per call: start, model load, query); then the server under load (16 clients
looping on POST /v1/search and 4 on POST /v1/ask, as four different users). A quarter of the way into the load, a
document changes and `rag index` publishes a new generation; the load goes on until the new one has been served a
while. Every response is then checked: no request may fail, and every search result list and every answer's
citations must match one generation's catalog exactly (ids, sources, texts), never a mix of two. One search
client asks for the changed document throughout: once it has seen the new text, it must never see the old one.
Figures are latencies in ms (p50/p95) and requests per second; the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

USERS = ("alice", "bob", "dmitri", "hana")
MARKER = "news/bench-marker.md"
MARKER_QUERY = "bench marker current generation codename"
K = 5
REPO = Path(__file__).resolve().parents[1]


def _marker(codename: str) -> str:
    return f"# Bench marker\n\nThe bench marker says the current generation codename is {codename}.\n"


def _questions() -> list[str]:
    """Demo QA train questions as load (nothing is scored or tuned on them)."""
    rows = [json.loads(line) for line in (REPO / "corpora" / "acme-qa.jsonl").read_text().splitlines() if line.strip()]
    return [row["question"] for row in rows if row.get("split") == "train"]


def _stats(times_ms: list[float]) -> dict:
    if not times_ms:
        return {"n": 0}
    return {
        "n": len(times_ms),
        "p50_ms": round(float(np.percentile(times_ms, 50)), 1),
        "p95_ms": round(float(np.percentile(times_ms, 95)), 1),
    }


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def cli(index_dir: Path, questions: list[str], n_search: int, n_ask: int) -> dict:
    out = {}
    for command, n in (("search", n_search), ("ask", n_ask)):
        times = []
        for i in range(n):
            t = time.perf_counter()
            subprocess.run(
                _rag(command, questions[i], "--index-dir", str(index_dir), "--user", "alice", "--json"),
                check=True,
                capture_output=True,
                cwd=REPO,
            )
            times.append((time.perf_counter() - t) * 1e3)
        out[command] = _stats(times)
    return out


class Server:
    """`rag serve` in a subprocess on a free loopback port."""

    def __init__(self, index_dir: Path, log: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            _rag("serve", "--index-dir", str(index_dir), "--port", str(self.port)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.startup_s = self._wait_healthy(started)

    def _wait_healthy(self, started: float, timeout_s: float = 300) -> float:
        import httpx

        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"rag serve exited with {self.process.returncode}; see {self._log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("rag serve did not become healthy")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


def _index(corpus: Path, index_dir: Path) -> None:
    subprocess.run(_rag("index", str(corpus), "--index-dir", str(index_dir)), check=True, capture_output=True, cwd=REPO)


def _search_body(query: str) -> dict:
    return {"query": query, "k": K}


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def paired(server: Server, tokens: dict, index_dir: Path, questions: list[str], n_search: int, n_ask: int) -> dict:
    """The Python API in this process and the server (one client) take turns on the same calls, so both see the
    same machine: on a shared, noisy machine only a side-by-side ratio means anything."""
    import httpx

    from rag.api import Index

    calls = {
        "search": (n_search, "/v1/search", lambda q: _search_body(q), lambda index, q, u: index.search(q, user=u, k=K)),
        "ask": (n_ask, "/v1/ask", lambda q: {"question": q}, lambda index, q, u: index.ask(q, user=u)),
    }
    times: dict[str, list[float]] = {f"{who} {kind}": [] for who in ("api", "server") for kind in calls}
    with Index.open(index_dir) as index, httpx.Client(base_url=server.url, timeout=600) as client:
        started = time.perf_counter()
        index.load_models()
        load_s = time.perf_counter() - started
        index.ask(questions[0], user="alice")  # warm-up, as the server's first request was
        client.post("/v1/ask", json={"question": questions[0]}, headers={"Authorization": f"Bearer {tokens['alice']}"})
        for kind, (n, path, body, call) in calls.items():
            for i in range(n):
                question, user = questions[(i * 7) % len(questions)], USERS[i % 4]
                order = ("api", "server") if i % 2 == 0 else ("server", "api")  # neither always goes first
                for who in order:
                    t = time.perf_counter()
                    if who == "api":
                        call(index, question, user)
                    else:
                        headers = {"Authorization": f"Bearer {tokens[user]}"}
                        client.post(path, json=body(question), headers=headers).raise_for_status()
                    times[f"{who} {kind}"].append((time.perf_counter() - t) * 1e3)
    return {
        "api_model_load_s": round(load_s, 1),
        "python_api": {kind: _stats(times[f"api {kind}"]) for kind in calls},
        "server_one_client": {kind: _stats(times[f"server {kind}"]) for kind in calls},
    }


class LoadClient(threading.Thread):
    """Loops on one endpoint until ``stop`` is set; records each request's latency, status and what it returned."""

    def __init__(self, url: str, token: str, kind: str, queries: list[str], stop: threading.Event, offset: int):
        super().__init__(daemon=True)
        self.url, self.token, self.kind, self.queries = url, token, kind, queries
        self.stop, self.offset = stop, offset
        self.records: list[dict] = []

    def run(self) -> None:
        import httpx

        path = "/v1/search" if self.kind == "search" else "/v1/ask"
        with httpx.Client(base_url=self.url, timeout=300, headers={"Authorization": f"Bearer {self.token}"}) as client:
            i = self.offset
            while not self.stop.is_set():
                query = self.queries[i % len(self.queries)]
                i += 1
                body = _search_body(query) if self.kind == "search" else {"question": query}
                t = time.perf_counter()
                try:
                    response = client.post(path, json=body)
                    status, data = response.status_code, response.json()
                except Exception as err:  # a lost request: counted, never raised
                    status, data = f"{type(err).__name__}", {}
                self.records.append({"t": t, "ms": (time.perf_counter() - t) * 1e3, "status": status, "data": data})


def _generation_catalogs(index_dir: Path) -> dict[str, dict[int, tuple[str, str]]]:
    """chunk id -> (source, text digest), per generation left in the index dir (the live one and its predecessor)."""
    import sqlite3

    catalogs = {}
    for gen in sorted(index_dir.glob("gen-*")):
        if gen.name.endswith(".tmp"):
            continue
        db = sqlite3.connect(f"file:{gen / 'catalog.sqlite'}?mode=ro", uri=True)
        rows = db.execute("SELECT c.id, d.source, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id")
        catalogs[gen.name] = {chunk_id: (source, _digest(text)) for chunk_id, source, text in rows}
        db.close()
    return catalogs


def _one_generation(found: list[tuple[int, str, str | None]], catalogs: dict) -> bool:
    """True when one generation holds every (chunk id, source, text digest or None) that a response carried."""

    def holds(catalog, chunk_id, source, digest):
        return chunk_id in catalog and catalog[chunk_id][0] == source and digest in (None, catalog[chunk_id][1])

    return any(all(holds(catalog, *item) for item in found) for catalog in catalogs.values())


def _check(clients: list[LoadClient], catalogs: dict, marker_client: LoadClient) -> dict:
    failed = [r for c in clients for r in c.records if r["status"] != 200]
    mixed = 0
    for client in clients:
        for record in client.records:
            if record["status"] != 200:
                continue
            data = record["data"]
            if client.kind == "search":
                found = [(hit["chunk_id"], hit["source"], _digest(hit["text"])) for hit in data["results"]]
                short = len(found) < K  # a mixed read would drop ids one generation lacks
            else:
                found, short = [(c["chunk_id"], c["source"], None) for c in data["citations"]], False
            if short or not _one_generation(found, catalogs):
                mixed += 1
    seen = []
    for record in marker_client.records:
        texts = " ".join(hit["text"] for hit in record.get("data", {}).get("results", []))
        seen.append("bravo" if "bravo" in texts else "alpha" if "alpha" in texts else "-")
    flipped_back = any(a == "bravo" and b == "alpha" for i, a in enumerate(seen) for b in seen[i + 1 :])
    return {
        "failed": len(failed),
        "failed_examples": [str(r["status"]) for r in failed[:5]],
        "mixed_generation": mixed,
        "marker_sequence": f"{seen.count('alpha')} alpha then {seen.count('bravo')} bravo",
        "marker_went_back": flipped_back,
    }


def load(server, tokens, index_dir, corpus, questions, duration, n_search, n_ask) -> dict:
    """Clients loop for ``duration`` s; a quarter of the way in, a document changes and `rag index` runs (in its own
    process, loading its own embedder). The load goes on until the new generation has been served for a while."""
    stop = threading.Event()

    def client(i: int, kind: str, queries: list[str]) -> LoadClient:
        return LoadClient(server.url, tokens[USERS[i % 4]], kind, queries, stop, offset=i * 7)

    search = [client(i, "search", questions) for i in range(n_search - 1)]
    marker = client(0, "search", [MARKER_QUERY])  # alice, who may read news/
    asks = [client(i, "ask", questions) for i in range(n_ask)]
    clients = [*search, marker, *asks]
    started = time.perf_counter()
    for each in clients:
        each.start()
    time.sleep(duration / 4)
    (corpus / MARKER).write_text(_marker("bravo"))
    t = time.perf_counter()
    _index(corpus, index_dir)
    published = time.perf_counter()
    time.sleep(max(started + duration - published, duration / 4))
    stop.set()
    for each in clients:
        each.join()
    elapsed = time.perf_counter() - started
    check = _check(clients, _generation_catalogs(index_dir), marker)
    rows = {}
    for kind, group in (("search", [*search, marker]), ("ask", asks)):
        times = [r["ms"] for c in group for r in c.records if r["status"] == 200]
        requests = sum(len(c.records) for c in group)
        rows[kind] = {**_stats(times), "clients": len(group), "requests": requests}
        rows[kind]["rps"] = round(requests / elapsed, 2)
    timing = {"duration_s": round(elapsed, 1), "reindex_s": round(published - t, 1)}
    timing["reindex_at_s"] = round(t - started, 1)
    return {**timing, **rows, **check}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load (default 60).")
    parser.add_argument("--search-clients", type=int, default=16)
    parser.add_argument("--ask-clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench-out/serve.json"))
    parser.add_argument("--quick", action="store_true", help="Fewer one-at-a-time calls: a smoke run of every row.")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from corpora import bundled_corpus
    from rag.keys import KeyStore

    questions = _questions()
    n_search, n_ask = (10, 2) if args.quick else (40, 8)
    report: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="rag-bench-serve-") as scratch:
        corpus = Path(shutil.copytree(bundled_corpus(), Path(scratch) / "acme"))
        (corpus / MARKER).write_text(_marker("alpha"))
        index_dir = Path(scratch) / "index"
        _index(corpus, index_dir)
        keys = KeyStore(index_dir)
        tokens = {user: keys.add(user)[1] for user in USERS}
        server = Server(index_dir, Path(scratch) / "serve.log")
        try:
            report["server_startup_s"] = round(server.startup_s, 1)
            print("python api and server, taking turns ...", flush=True)
            report.update(paired(server, tokens, index_dir, questions, n_search, n_ask))
            print("cli ...", flush=True)
            report["cli"] = cli(index_dir, questions, n_search=1 if args.quick else 3, n_ask=1 if args.quick else 3)
            print(f"server under load for {args.duration:g} s ...", flush=True)
            report["server_load"] = load(
                server, tokens, index_dir, corpus, questions, args.duration, args.search_clients, args.ask_clients
            )
        finally:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _print(report)
    return 0


def _print(report: dict) -> None:
    def cell(row: dict) -> str:
        return f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}" if row.get("n") else f"{'-':>8} {'-':>8}"

    load = report["server_load"]
    print(f"\n{'':38} {'search p50':>8} {'p95':>8}   {'ask p50':>8} {'p95':>8}")
    rows = [
        ("Python API, one call at a time", report["python_api"]),
        ("CLI, one process per call", report["cli"]),
        ("server, one client", report["server_one_client"]),
        (f"server, {load['search']['clients']} search + {load['ask']['clients']} ask clients", load),
    ]
    for name, row in rows:
        print(f"{name:38} {cell(row['search'])}   {cell(row['ask'])}")
    print(
        f"\nload: {load['search']['requests']} searches ({load['search']['rps']}/s), {load['ask']['requests']} asks "
        f"({load['ask']['rps']}/s) in {load['duration_s']:g} s; failed {load['failed']}; mixed generation "
        f"{load['mixed_generation']}; re-index at {load['reindex_at_s']} s took {load['reindex_s']} s; marker: "
        f"{load['marker_sequence']}"
        f"{' (WENT BACK)' if load['marker_went_back'] else ''}"
    )


if __name__ == "__main__":
    sys.exit(main())
