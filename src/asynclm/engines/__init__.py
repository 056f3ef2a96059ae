"""Engines behind one interface (:class:`~asynclm.engines.base.Engine`): the simulator
(:mod:`~asynclm.engines.sim`, virtual time), llama.cpp in-process with injection into the live KV
cache (:mod:`~asynclm.engines.llamacpp`, extra ``llama``), and OpenAI-compatible servers
(:mod:`~asynclm.engines.openai_http`, extra ``openai``)."""
