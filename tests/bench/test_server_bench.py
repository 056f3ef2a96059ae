"""The server benchmark's reading of llama_cpp.server's log, and its report (no server)."""

from __future__ import annotations

from asynclm.bench.server import LlamaCppServer, server_report


def test_prefix_hits_are_read_from_the_log_since_an_offset(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"Llama.generate: 400 prefix-match hit, remaining 12 prompt tokens to eval\n")
    srv = LlamaCppServer(tmp_path / "m.gguf", log_path=log)
    offset = srv.log_offset()
    with open(log, "ab") as f:
        f.write(b"INFO: POST /v1/completions 200\n"
                b"Llama.generate: 512 prefix-match hit, remaining 20 prompt tokens to eval\n"
                b"noise\nLlama.generate: 530 prefix-match hit, remaining 1 prompt tokens to eval\n")
    assert srv.prefix_hits() == [(400, 12), (512, 20), (530, 1)]
    assert srv.prefix_hits(offset) == [(512, 20), (530, 1)]
    assert "--n_threads" in srv.command() and "127.0.0.1" in srv.command()


def test_report_has_a_row_per_strategy_and_run():
    run = {"task": "t", "strategy": "async", "latency_s": 1.5, "n_calls": 2, "n_generated": 40,
           "prefill_tokens": 33, "stop_reason": "eos"}
    summary = {"median_latency_s": 1.5, "median_prefill_tokens": 33, "total_prefill_tokens": 33,
               "total_prompt_tokens_sent": 900, "requests": 3, "finished": 1, "runs": 1}
    md = server_report({"server": "s", "model": "m", "n_threads": 1, "max_tokens": 9,
                        "summary": {"async": summary}, "runs": [run], "command": "asynclm x"})
    assert "| async | 1.50 | 33 | 33 | 900 | 3 | 1/1 |" in md
    assert "| t | async | 1.50 | 2 | 40 | 33 | eos |" in md
    assert "Reproduce: `asynclm x`" in md
