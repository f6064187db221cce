"""Storage for governance: budget counters, rate-limit counters and remembered tool verdicts,
in memory or in Redis, built together by ``sluice.backends.factory.build_backend``.

Below governance: nothing here imports it. ``protocols`` holds the contracts and shared types.
"""
