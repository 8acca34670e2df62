"""The demo: a small instrumented shop whose configuration lives in git, faults injected into it,
and selfheal healing them through real Prometheus, Alertmanager and Temporal.

`python -m demo` (or `selfheal demo`) runs every scenario; `demo.stack.DemoStack` and
`demo.scenarios.run_scenario` are what the end-to-end test and the latency benchmark drive.
"""
