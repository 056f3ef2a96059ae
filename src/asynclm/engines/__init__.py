"""Engines behind one interface (:class:`~asynclm.engines.base.Engine`): llama.cpp in-process
with injection into the live KV cache (:mod:`~asynclm.engines.llamacpp`, extra ``llama``), and
OpenAI-compatible servers (:mod:`~asynclm.engines.openai_http`, extra ``openai``). The
simulator, an engine on virtual time for tests and benchmarks, is a test double:
:mod:`asynclm.testing`."""
