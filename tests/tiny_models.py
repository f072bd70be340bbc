"""Tiny random models of many architectures, built in code and saved as Hugging Face
folders (nothing is downloaded), for the architecture matrix and the tests that need a
model of one particular shape.

Each is two layers of width 64 or so; attention windows are ``WINDOW`` tokens, short
enough that the matrix's long prompts make them slide and its short ones fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import KOREAN_SENTENCES, SPECIALS

WINDOW = 64  # tokens of attention window, where an architecture has one

# Sizes most configs take; an architecture's own entry below adds or replaces.
COMMON: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
    "max_position_embeddings": 256, "initializer_range": 0.2, "tie_word_embeddings": False,
}
SLIDING_THEN_FULL = ["sliding_attention", "full_attention"]
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (model_type, config overrides)
    "gpt2": ("gpt2", {}),
    "llama-gqa": ("llama", {"num_key_value_heads": 2}),
    "mistral-window": ("mistral", {"num_key_value_heads": 2, "sliding_window": WINDOW}),
    "gemma2": ("gemma2", {"sliding_window": WINDOW, "layer_types": SLIDING_THEN_FULL}),
    "gemma3-window": ("gemma3_text", {"sliding_window": WINDOW,
                                      "layer_types": SLIDING_THEN_FULL}),
    "gpt-neox": ("gpt_neox", {"rotary_pct": 0.5}),
    "qwen3": ("qwen3", {"num_key_value_heads": 2}),
    "exaone4": ("exaone4", {"sliding_window": WINDOW, "layer_types": SLIDING_THEN_FULL}),
    # windows, attention sinks and a mixture of experts
    "gpt-oss": ("gpt_oss", {"sliding_window": WINDOW, "layer_types": SLIDING_THEN_FULL,
                            "num_local_experts": 4, "num_experts_per_tok": 2,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
    # DeepSeek-V3's attention: keys 16 wide (8 without and 8 with rotation), values 8
    "deepseek-v3": ("deepseek_v3", {
        "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 8, "head_dim": 8,
        "qk_nope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 4,
        "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
        "moe_intermediate_size": 32,
    }),
    # a convolution layer beside an attention layer
    "lfm2-hybrid": ("lfm2", {"layer_types": ["conv", "full_attention"], "block_dim": 64,
                             "block_ff_dim": 96, "conv_L_cache": 3}),
    # a gated delta-rule (linear attention) layer beside an attention layer
    "qwen3.5-hybrid": ("qwen3_5_text", {
        "layer_types": ["linear_attention", "full_attention"], "linear_key_head_dim": 8,
        "linear_value_head_dim": 8, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
        "linear_conv_kernel_dim": 4,
    }),
    # a byte-level BPE tokenizer without a pad token (the harness pads with eos)
    "gpt2-no-pad": ("gpt2", {}),
}
NO_PAD = {"gpt2-no-pad"}


def sentencepiece_tokenizer() -> Any:
    """A SentencePiece-BPE tokenizer of the Korean sentences, with <s> </s> <pad> <unk>."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = SentencePieceBPETokenizer()
    bpe.train_from_iterator(KOREAN_SENTENCES, vocab_size=400, min_frequency=1,
                            special_tokens=SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def byte_level_tokenizer() -> Any:
    """A GPT-2-style byte-level BPE of the same sentences: one special token, no pad, and
    a word spelled with other tokens after a space than at the start of a text."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(KOREAN_SENTENCES, vocab_size=600, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")


def build(folder: Path, name: str, seed: int = 3, **changes: Any) -> Path:
    """Save the tiny model ``name`` of ARCHITECTURES, with its tokenizer, into ``folder``
    (``changes``: config values to set besides the architecture's own)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, overrides = ARCHITECTURES[name]
    tokenizer = byte_level_tokenizer() if name in NO_PAD else sentencepiece_tokenizer()
    specials = {
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer),
        **{**COMMON, **overrides, **changes, **specials},
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bigram_model(folder: Path, tokenizer: Any, successors: dict[int, int], seed: int = 5
                 ) -> Path:
    """A one-layer GPT-2 whose greedy choice after token x is ``successors[x]``, whatever
    came before (a bigram model), saved with ``tokenizer`` into ``folder``.

    Its attention and MLP add nothing and positions are zero, so the last hidden state
    is LayerNorm(embedding of x); the output row of each successor is the sum of the
    normalised embeddings of the tokens it follows, which outscores every other row by
    far. Other tokens' rows are small noise: after an unlisted token, or once the
    successor is banned, the choice is arbitrary but fixed.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=64, n_layer=1, n_head=1, n_positions=256,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        block = model.transformer.h[0]
        for layer in (block.attn.c_proj, block.mlp.c_proj):
            layer.weight.zero_()
            layer.bias.zero_()
        model.transformer.wpe.weight.zero_()
        embeddings = model.transformer.wte.weight
        normed = torch.nn.functional.layer_norm(embeddings, (embeddings.shape[1],))
        head = 0.1 * torch.randn_like(model.lm_head.weight)
        for token, successor in successors.items():
            head[successor] += normed[token]
        model.lm_head.weight.copy_(head)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# A chat template of our own, in the usual shape: turns marked by special tokens, bos at
# the start, and the assistant's turn opened when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# ... and one that, like some models' templates, refuses a system turn
NO_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}" + CHAT_TEMPLATE
)
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def chat_model(folder: Path, template: str = CHAT_TEMPLATE, seed: int = 4) -> Path:
    """A tiny GPT-2 whose tokenizer adds <s> to every text and has ``template`` as its
    chat template (turn markers as special tokens; "<|end|>" also ends an answer)."""
    import torch
    from tokenizers import processors
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = sentencepiece_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_TOKENS})
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tokenizer.chat_template = template
    torch.manual_seed(seed)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=512,
        initializer_range=0.2, bos_token_id=bos, eos_token_id=[tokenizer.eos_token_id, end],
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
