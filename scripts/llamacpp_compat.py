"""Shared llama-cpp-python workaround for the scripts (no torch import here)."""


def no_extra_buffers():
    """llama.cpp's CPU "extra" buffer types (weight repacking / AMX) crash (SIGSEGV) on quantized
    models on AMX machines (llama-cpp-python 0.3.36; also on llama-quantize's own output); plain
    CPU buffers compute the same thing. Patch llama-cpp-python's default model params accordingly."""
    import llama_cpp
    import llama_cpp.llama as L

    if getattr(llama_cpp.llama_model_default_params, "_slmc_patched", False):
        return
    orig = llama_cpp.llama_model_default_params

    def patched():
        p = orig()
        p.use_extra_bufts = False
        return p

    patched._slmc_patched = True
    llama_cpp.llama_model_default_params = patched
    L.llama_cpp.llama_model_default_params = patched
