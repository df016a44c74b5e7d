"""A bounded load test of ``create_app`` on loopback: 8 concurrent clients x 6 requests, malformed
requests interleaved and a few 200 kB dialogues among the good ones, on the tiny CPU model.

Every good answer must equal the answer the same input gets alone, every malformed request its
4xx, nothing a 5xx; ``/v1/models`` is polled throughout and must stay fast (tokenisation and
generation run off the event loop). The numbers are printed (``pytest -s``) for the README.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from lightning_summ.api.server import create_app
from test_api import serving
from test_server import DIALOGUES, MALFORMED, chat, post, tiny_module

CLIENTS, PER_CLIENT = 8, 6
BIG = ("#Person1#: 내일 회의 자료를 어디에 두었는지 기억나세요? #Person2#: 책상 위 파란 폴더에 있어요. " * 3000)[:200_000]


def workload() -> list[list[tuple]]:
    """Per client: ("good", dialogue) or ("bad", case, body, status), a third of them malformed."""
    plans = []
    for c in range(CLIENTS):
        plan = []
        for i in range(PER_CLIENT):
            k = c * PER_CLIENT + i
            if i % 3 == 2:
                case, body, status, _ = MALFORMED[k % len(MALFORMED)]
                plan.append(("bad", case, body, status))
            else:
                plan.append(("good", BIG if i == 0 and c % 2 == 0 else DIALOGUES[k % len(DIALOGUES)]))
        plans.append(plan)
    return plans


def test_concurrent_clients_get_their_single_request_answers_and_models_stays_fast(tmp_path_factory):
    app = create_app(tiny_module(tmp_path_factory), max_batch_size=8, max_wait_ms=10)
    plans = workload()
    with serving(app) as url:
        answer = lambda d: post(url, chat(d))  # noqa: E731
        alone = {d: answer(d)[1]["choices"][0]["message"]["content"] for d in {*DIALOGUES, BIG}}
        probes, done = [], threading.Event()

        def probe_models():
            while not done.is_set():
                started = time.perf_counter()
                status = post(url, None, path="/v1/models", method="GET")[0]
                probes.append((status, time.perf_counter() - started))
                time.sleep(0.02)

        def run_client(plan):
            results = []
            for item in plan:
                started = time.perf_counter()
                status, body, _ = post(url, chat(item[1]) if item[0] == "good" else item[2])
                results.append((item, status, body, time.perf_counter() - started))
            return results

        prober = threading.Thread(target=probe_models, daemon=True)
        prober.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [r for client in pool.map(run_client, plans) for r in client]
        wall = time.perf_counter() - started
        done.set()
        prober.join(10)

    assert wall < 120 and len(results) == CLIENTS * PER_CLIENT
    wrong = [(item[:2], status, body) for item, status, body, _ in results
             if (item[0] == "good" and (status != 200 or body["choices"][0]["message"]["content"] != alone[item[1]]))
             or (item[0] == "bad" and status != item[3])]
    assert wrong == []
    assert len(set(alone.values())) > len(DIALOGUES) // 2  # the comparison is between different answers
    good = sorted(seconds for item, _, _, seconds in results if item[0] == "good")
    assert app.state.batcher.stats["batches"] < app.state.batcher.stats["requests"]  # really batched
    latencies = sorted(seconds for _, seconds in probes)
    assert probes and all(status == 200 for status, _ in probes)
    # /v1/models must answer within 100 ms; the 90th percentile is asserted (plus a 3 s bound on
    # every probe) so that a CPU shared with other jobs cannot fail the test by descheduling us
    # (one probe took 1.1 s on a 2-core machine running two other test suites; the p90 was 5 ms).
    p90_models = latencies[int(0.9 * (len(latencies) - 1))]
    assert p90_models < 0.1 and latencies[-1] < 3.0
    print(f"\nserve load (tiny CPU model, {CLIENTS} clients x {PER_CLIENT} requests, "
          f"{sum(item[0] == 'bad' for item, *_ in results)} malformed): {len(results) / wall:.1f} req/s, "
          f"good requests p50 {statistics.median(good) * 1000:.0f} ms "
          f"p99 {good[int(0.99 * (len(good) - 1))] * 1000:.0f} ms; /v1/models {len(latencies)} probes "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p90 {p90_models * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; wall {wall:.1f} s")
