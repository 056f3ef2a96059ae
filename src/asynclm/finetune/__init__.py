"""Fine-tuning a model to the interrupt protocol: training data by simulation (:mod:`.data`),
LoRA SFT (:mod:`.train`, extra ``finetune``), export for the llama.cpp engine (:mod:`.export`).

Nothing here is imported by ``import asynclm``; torch, transformers, peft and gguf are imported
only inside the functions that need them."""
