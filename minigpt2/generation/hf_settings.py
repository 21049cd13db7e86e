"""transformers' generation settings that minigpt2's GenerationConfig has no field for, and reading a transformers
GenerationConfig (any object with ``to_dict()``; transformers itself is never imported).

transformers 4.57's GenerationConfig has about 30 settings beyond the ones minigpt2 implements (5.x's, a few more:
use_mtp, max_cache_len, ...). Each is either

    inert       it cannot change the tokens generated: how transformers lays out or compiles its cache, the knobs
                of assisted decoding (refused below, so they never act), encoder-decoder settings. Accepted.
    refused     it turns on a strategy or a processor minigpt2 does not have (group beam search, contrastive
                search, classifier-free guidance, watermarking, ...). A ValueError names it and what to do,
                instead of generating something else than transformers would.

A refused setting at a value where transformers does not act on it (guidance_scale=1, penalty_alpha with
do_sample=True, num_beam_groups=1, ...) is accepted, as transformers accepts it.
"""
from __future__ import annotations

from dataclasses import fields

# what transformers writes besides the settings (save_pretrained, to_dict)
METADATA = ("transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash")

INERT = (
    "cache_implementation", "cache_config", "return_legacy_cache", "prefill_chunk_size", "compile_config",
    "disable_compile", "low_memory",  # memory and speed only (low_memory with beams: refused below, as HF does)
    "is_assistant", "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind", "max_matching_ngram_size", "assistant_tokenizer",
    "decoder_start_token_id",  # encoder-decoder models only
    "negative_prompt_ids", "negative_prompt_attention_mask",  # read only by guidance_scale (refused when on)
    "synced_gpus", "trust_remote_code",
    # transformers 5's: serving and cache layout, and knobs of assisted decoding (refused below, so they never act)
    "max_cache_len", "continuous_batching_config", "speculation_type", "assistant_ensemble_weight",
)

_SAME = "without it, greedy decoding gives the same tokens"
# setting -> (does it act, given the other settings?, what it is in transformers[, a hint])
_REFUSED = {
    "num_beam_groups": (lambda s, c: c.num_beams > 1 and (s.get("num_beam_groups") or 1) > 1,
                        "group (diverse) beam search, with diversity_penalty",
                        "transformers 4.57 moved it to the Hub: transformers-community/group-beam-search"),
    "penalty_alpha": (lambda s, c: c.num_beams == 1 and not c.do_sample and c.top_k is not None and c.top_k > 1
                      and (s.get("penalty_alpha") or 0) > 0,
                      "contrastive search",
                      "transformers 4.57 moved it to the Hub: transformers-community/contrastive-search"),
    "dola_layers": (lambda s, c: s.get("dola_layers") is not None,
                    "DoLa decoding",
                    "transformers 4.57 moved it to the Hub: transformers-community/dola"),
    "constraints": (lambda s, c: s.get("constraints") is not None, "constrained beam search"),
    "force_words_ids": (lambda s, c: s.get("force_words_ids") is not None,
                        "constrained beam search",
                        "bad_words_ids, the opposite, is supported"),
    "guidance_scale": (lambda s, c: s.get("guidance_scale") not in (None, 1, 1.0),
                       "classifier-free guidance (UnbatchedClassifierFreeGuidanceLogitsProcessor)"),
    "watermarking_config": (lambda s, c: s.get("watermarking_config") is not None, "watermarking"),
    "token_healing": (lambda s, c: bool(s.get("token_healing")), "token healing"),
    "assistant_model": (lambda s, c: s.get("assistant_model") is not None,
                        "assisted (speculative) decoding", _SAME),
    "prompt_lookup_num_tokens": (lambda s, c: s.get("prompt_lookup_num_tokens") is not None,
                                 "prompt lookup decoding", _SAME),
    "assistant_early_exit": (lambda s, c: s.get("assistant_early_exit") is not None,
                             "self-speculative (early exit) decoding", _SAME),
    "custom_generate": (lambda s, c: s.get("custom_generate") is not None,
                        "generation code loaded from the Hub"),
    "use_mtp": (lambda s, c: bool(s.get("use_mtp")),
                "multi-token-prediction decoding (transformers 5)",
                "it needs MTP weights, which GPT-2 has not: transformers 5 refuses it for GPT-2 too"),
}
_COMPANIONS = {"diversity_penalty": "num_beam_groups"}  # only read by the strategy of the other setting

# Every name generate() accepts besides GenerationConfig's fields and its own arguments.
HF_ONLY = INERT + tuple(_REFUSED) + tuple(_COMPANIONS)


def check_unsupported(settings: dict, cfg) -> None:
    """Raise a ValueError if one of ``settings`` (names in HF_ONLY) would make transformers generate differently
    from what minigpt2 can do with ``cfg``; say what it is and what is allowed."""
    if settings.get("low_memory") and cfg.num_beams > 1:
        raise ValueError("low_memory=True is not supported with beam search (num_beams > 1), as in transformers "
                         "4.57; leave it out (minigpt2's beam search already runs every beam in one batch)")
    for name, (acts, what, *hint) in _REFUSED.items():
        if name in settings and acts(settings, cfg):
            value = settings[name]
            shown = type(value).__name__ if name == "assistant_model" else repr(value)
            raise ValueError(f"{name}={shown} asks for {what}, which minigpt2's generate does not implement: "
                             f"remove it{' (' + hint[0] + ')' if hint else ''}. minigpt2 has greedy search, "
                             f"sampling (temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff) "
                             f"and beam search (num_beams, with or without do_sample), with the processors listed in "
                             f"docs/generation.md")


def read_hf_generation_config(obj, our_fields):
    """A transformers GenerationConfig (or any object whose ``to_dict()`` gives its settings) -> (the settings that
    are GenerationConfig fields, the others from HF_ONLY). Metadata is dropped; a name that is neither is a
    ValueError unless it is None or False (off)."""
    to_dict = getattr(obj, "to_dict", None)
    if not callable(to_dict):
        kind = type(obj)
        raise TypeError(f"generation_config must be a minigpt2.GenerationConfig, got {kind.__module__}."
                        f"{kind.__qualname__} (a transformers.GenerationConfig, or any object with to_dict(), is read "
                        f"too); build one with minigpt2.GenerationConfig(max_new_tokens=..., ...)")
    settings = to_dict()
    if not isinstance(settings, dict):
        raise TypeError(f"generation_config.to_dict() must return a dict, got {type(settings).__name__}")
    names = {f.name for f in fields(our_fields)}
    ours = {k: v for k, v in settings.items() if k in names}
    others = {k: v for k, v in settings.items() if k not in names and k not in METADATA and not k.startswith("_")}
    unknown = sorted(k for k, v in others.items() if k not in HF_ONLY and v is not None and v is not False)
    if unknown:
        raise ValueError(f"generation_config sets {', '.join(f'{k}={others[k]!r}' for k in unknown)}, which "
                         f"minigpt2's generate does not know; remove it. It accepts the fields of "
                         f"minigpt2.GenerationConfig and, where they do not change the result, transformers' other "
                         f"settings")
    return ours, {k: v for k, v in others.items() if k in HF_ONLY}
