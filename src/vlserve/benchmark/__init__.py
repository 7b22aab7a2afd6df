"""`vlserve bench`: load any OpenAI-compatible endpoint and measure it from the client's side.

workloads (the generated requests) → load (closed loop or Poisson arrivals per level) → measure (one streamed
request timed) → stats (a level's percentiles and rates) → report and plot (table, JSON, PNG); endpoint checks
the URL first, runner ties a run together, naive is the in-process transformers baseline. The command itself
is `vlserve.cli.bench`; the bench/ scripts send their own request bodies through ``load.run_level``.
"""
