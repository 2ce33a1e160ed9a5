"""The demo's sources: a seeded event stream with a drift (:mod:`.data`), request
traffic against inference (:mod:`.traffic`) and a labeller that answers label
requests (:mod:`.requests`). ``driftline demo`` and ``driftline up --demo`` drive
them; the benchmarks and tests use the same stream."""
