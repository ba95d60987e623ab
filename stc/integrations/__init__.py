"""stc inside serving engines. Each integration is an optional extra with its own module
(``stc.integrations.vllm``: the ``stc[vllm]`` extra); nothing is imported here, so ``import stc``
never pulls an engine in."""
