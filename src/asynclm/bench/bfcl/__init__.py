"""``asynclm bench bfcl``: the Berkeley Function Calling Leaderboard through the runtime.

Items, ground truth and the AST checker come from the ``bfcl-eval`` package (installed with
``--no-deps``; imported offline, see :mod:`._pkg`). Each item runs under several strategies
(sync, sync-reprefill, sync-parallel, async, …, and BFCL's own one-shot prompt as
``bfcl-prompt``) with seeded, strategy-independent tool times; the result holds every run's
latency, breakdown, calls, BFCL validity and lower bound, and per-strategy summaries.

Modules: :mod:`.data` (items, and the joined ``multi-step-parallel`` set), :mod:`.checker`
(BFCL's ast_checker), :mod:`.multi_turn` (BFCL's real tool classes and multi-turn checker),
:mod:`.timing` (tool times), :mod:`.bfcl_prompt` (BFCL's prompt and answer decoding),
:mod:`.run` (the runner), :mod:`.run_multi` (multi-turn conversations), :mod:`.bound` (a
run's lower bound), :mod:`.summary` (summaries over items, merging), :mod:`.report` (Markdown),
:mod:`.reproduce` (the paper's latency table), :mod:`.plots` (its plots).
"""

from asynclm.bench.bfcl._pkg import BfclNotInstalled, available

__all__ = ["BfclNotInstalled", "available"]
