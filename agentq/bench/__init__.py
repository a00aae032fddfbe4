"""`agentq bench`: agentq's throughput and latency against bare Celery on the same Redis.

One run starts everything it measures, on its own: a PostgreSQL database it creates
(or the one given), an embedded Redis of its own, the fake LLM with a set latency, and
agentq worker processes with the chosen pool. Then:

1. **latency**: `conversations` DMs receive `rate` messages a second for `duration`
   seconds. From the database timestamps of every turn: end-to-end latency split into
   debounce wait, queue wait, LLM time, completion time and orchestration overhead
   (end-to-end minus the debounce window minus the LLM call), and the debounce timer's
   fire-time error (job created minus computed due time). With `--rates 10,20,40` this
   runs once per rate (`latency_by_rate`; `latency` is the first).
2. **throughput**: `burst` messages, one a conversation, posted at once: turns a second.
3. **baselines** on the same Redis: bare Celery no-op tasks a second, and a hand-written
   one-task-a-message pipeline doing the same database writes (messages/s). They live in
   the repository (`ops/bench/baseline.py`), not in the package: a run without a checkout
   skips them and says so.
4. **capacity** (optional): `capacity` LLM calls held at once by one worker process with
   a slow fake LLM: peak in flight, worker RSS, and whether any turn was lost.

Figures depend on the host; nothing here asserts on speed.

Imported only by its command (`agentq bench`, `python -m agentq.bench`), never by the rest of
agentq. This file imports nothing, so that the command line loads only `command.py`.

    command.py   the `agentq bench` command and its options
    config.py    BenchConfig, SHORT (CI) and FULL
    phases.py    latency, throughput and capacity of agentq
    baseline.py  the bare-Celery baselines, found in a checkout (ops/bench/baseline.py)
    turns.py     how far a run got, each turn timed
    reads.py     the statements behind them (to move to agentq/store/bench.py)
    measure.py   percentiles, peak RSS, waiting
    run.py       run_bench, ratios, format_report
    plot.py      `--plot`: latency split against offered load, ratios (matplotlib, lazily)
"""
