"""A tiny randomly initialised Qwen3 chat model, built offline, to test the LLM miner end to end.

Why: the real miner needs Qwen3-4B (a download and a GPU); the code path (chat template, constrained
decoding, HTTP serving, caching) is the same for a model of 64 hidden units, which builds in seconds on
CPU. Its answers are schema-valid by construction (xgrammar) and meaningless by design.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Qwen-style ChatML with Qwen3's ``enable_thinking`` switch (an empty think block when it is False).
CHAT_TEMPLATE = (
    "{%- for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def _default_corpus() -> list[str]:
    from repgls.mining.llm import build_schema, load_prompt, system_message
    from repgls.vocab import BUILTIN_VOCABS, load_vocab

    prompt = load_prompt()
    out = []
    for name in BUILTIN_VOCABS:
        vocab = load_vocab(name)
        out.append(system_message(prompt, vocab))
        out.append(str(build_schema(vocab, prompt)))
    out.append('{"findings": [{"finding": "Edema", "status": "uncertain", "certainty": "possible"}]}')
    return out


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 600,
    hidden_size: int = 64,
    num_layers: int = 2,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a tiny Qwen3ForCausalLM (random weights) + a byte-level BPE tokenizer with a chat template.

    The tokenizer is trained on ``corpus`` (default: the miner's prompts and schemas), so prompts encode
    into few tokens. Deterministic for a given seed. Returns ``out_dir``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus) if corpus is not None else _default_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    config = Qwen3Config(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        head_dim=hidden_size // 4, max_position_embeddings=8192, tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    return out
