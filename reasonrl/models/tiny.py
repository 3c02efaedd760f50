"""A tiny Qwen2-architecture causal LM with a character-level tokenizer, built from scratch.

No weights can be downloaded on a fresh machine, so the embedded default builds its own model:
a randomly initialised ``Qwen2ForCausalLM`` (sizes as options) and a character tokenizer with a
Qwen-style chat template, saved as an ordinary Hugging Face checkpoint directory. Both
``transformers.AutoModelForCausalLM`` / ``AutoTokenizer`` and vLLM load it like any other model.

The tokenizer is a *tiny byte-level BPE trained on generated task text*: every byte is a token
(so any text encodes), plus a few hundred merges learned from the prompts and worked solutions
of the built-in procedural tasks, so that boilerplate such as `` Put the final answer in``
costs a handful of tokens instead of one per character. Digits are never merged (the Qwen2
pre-tokenizer isolates each digit), which keeps arithmetic one digit per token. The chat markers
(``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``) are single special tokens. With
``bpe_merges=0`` it is a plain byte-level (character-level for ASCII) tokenizer.

Example::

    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model
    path = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2), "/tmp/tiny")
    model = AutoModelForCausalLM.from_pretrained(path)
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = SPECIAL_TOKENS

# Qwen-style ChatML. The generation prompt opens the assistant turn; the model ends it with <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def byte_symbols() -> list[str]:
    """The 256 byte-level symbols, in byte order (byte ``b`` is token id ``b``).

    Printable Latin-1 bytes stand for themselves; the others (space, newline, control bytes...) are
    shifted to unused code points from 256 up, the usual byte-level BPE alphabet (space is ``Ġ``,
    newline ``Ċ``). With no merges every byte of the UTF-8 text is one token, so any string encodes
    and ASCII text is exactly one token per character.
    """
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    shifted = 0
    symbols = []
    for b in range(256):
        if b in keep:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny Qwen2 model.

    Attributes:
        hidden_size: model width.
        num_layers: transformer blocks.
        num_heads: attention heads (``hidden_size`` must divide by it).
        num_kv_heads: key/value heads (grouped-query attention; divides ``num_heads``).
        intermediate_size: MLP width; 0 means ``4 * hidden_size``.
        max_position_embeddings: longest prompt + response in tokens.
        bpe_merges: merges of the tiny BPE learned from generated task text (0: bytes only).
        seed: seed of the random initialisation (the same seed gives the same weights).
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 0
    max_position_embeddings: int = 512
    bpe_merges: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bpe_merges < 0:
            raise ValueError(f"tiny model: bpe_merges must be >= 0, got {self.bpe_merges}")
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"tiny model: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"tiny model: hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"tiny model: num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("tiny model: head dimension (hidden_size / num_heads) must be even for rotary embeddings")

    def fingerprint(self) -> str:
        """A short hash of the sizes and seed (used to cache built models)."""
        corpus_hash = hashlib.sha256("\x00".join(tokenizer_corpus()).encode()).hexdigest() if self.bpe_merges else ""
        payload = json.dumps({**asdict(self), "corpus": corpus_hash, "format": 2}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tokenizer_corpus(per_task: int = 200) -> list[str]:
    """The text the tiny BPE is trained on: chat-template words plus prompts and worked solutions of
    the built-in procedural generators (default difficulty, seeds ``0..per_task-1``)."""
    from reasonrl import data_gen

    # The role names appear in every conversation: weight them like one line per generated problem.
    texts = ["user\nsystem\nassistant\n"] * per_task
    for name in ("arith", "kk", "countdown", "graph_coloring"):
        if name not in data_gen.names():
            continue  # a partial checkout: train on what exists
        generator = data_gen.get(name)
        for seed in range(per_task):
            problem = generator.generate(seed)
            texts.extend(message["content"] for message in problem["prompt"])
            solution = problem["metadata"].get("worked_solution")
            if solution:
                texts.append(solution)
    return texts


def learn_bpe_merges(words: dict[tuple[str, ...], int], num_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: the smallest pair), deterministic.

    Args:
        words: pre-token (as a tuple of byte symbols) -> count in the corpus.
        num_merges: at most this many merges (fewer when no pair occurs twice).
    """
    words = dict(words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pair_counts: dict[tuple[str, str], int] = {}
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
        if not pair_counts:
            break
        best, best_count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if best_count < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        new_words: dict[tuple[str, ...], int] = {}
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            key = tuple(out)
            new_words[key] = new_words.get(key, 0) + count
        words = new_words
    return merges


@functools.lru_cache(maxsize=8)
def _trained_merges(bpe_merges: int) -> tuple[tuple[str, str], ...]:
    """The merges learned from :func:`tokenizer_corpus` (memoised: a few seconds for 256 merges)."""
    from transformers import Qwen2Tokenizer

    # Pre-tokenize exactly as the final tokenizer will, so merges never cross its word boundaries.
    base_vocab = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    splitter = Qwen2Tokenizer(vocab=base_vocab, merges=[])._tokenizer.pre_tokenizer
    words: dict[tuple[str, ...], int] = {}
    for text in tokenizer_corpus():
        for piece, _ in splitter.pre_tokenize_str(text):
            words[tuple(piece)] = words.get(tuple(piece), 0) + 1
    return tuple(learn_bpe_merges(words, bpe_merges))


def build_tokenizer(bpe_merges: int = 0):
    """A byte-level BPE tokenizer (a ``Qwen2Tokenizer``) with ``bpe_merges`` merges learned from
    :func:`tokenizer_corpus`, plus the ChatML special tokens and chat template.

    It is exactly a ``Qwen2Tokenizer``: transformers maps the ``qwen2`` model type to that class
    whatever ``tokenizer_config.json`` says, so building that class keeps every loader
    (``AutoTokenizer``, vLLM, ``PreTrainedTokenizerFast(tokenizer_file=...)``) in agreement.
    Byte ``b`` is token id ``b``; merged tokens follow; the special tokens come last.
    """
    from transformers import Qwen2Tokenizer

    vocab = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    merges = list(_trained_merges(bpe_merges)) if bpe_merges else []
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[BOS_TOKEN],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        padding_side="left",  # decoder-only generation pads on the left
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(config: TinyModelConfig, tokenizer: Any):
    """A randomly initialised ``Qwen2ForCausalLM``; the same ``config.seed`` gives identical weights."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size or 4 * config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=ids[BOS_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
        rope_theta=10000.0,
        torch_dtype="float32",
    )
    # Seed a private generator state: building a model must not disturb the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2ForCausalLM(model_config)
    model.generation_config.eos_token_id = ids[EOS_TOKEN]
    model.generation_config.pad_token_id = ids[PAD_TOKEN]
    model.generation_config.bos_token_id = ids[BOS_TOKEN]
    return model


def build_tiny_model(config: TinyModelConfig | None = None, output_dir: str | os.PathLike | None = None) -> str:
    """Build the tiny model and tokenizer and save them as a Hugging Face checkpoint directory.

    Args:
        config: sizes and seed (defaults to :class:`TinyModelConfig`).
        output_dir: where to save; default ``$REASONRL_CACHE/tiny-<fingerprint>`` (reused when it exists).

    Returns:
        The checkpoint directory path (a string).
    """
    config = config or TinyModelConfig()
    if output_dir is None:
        output_dir = cache_dir() / f"tiny-{config.fingerprint()}"
        if (Path(output_dir) / "reasonrl_tiny.json").exists():
            return str(output_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(config.bpe_merges)
    model = build_model(config, tokenizer)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    # Written last: its presence marks a complete build (a killed build is rebuilt, not reused).
    (output_dir / "reasonrl_tiny.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return str(output_dir)


def cache_dir() -> Path:
    """Where built tiny models and warmed-up checkpoints are cached (``$REASONRL_CACHE`` or ~/.cache/reasonrl)."""
    return Path(os.environ.get("REASONRL_CACHE", Path.home() / ".cache" / "reasonrl"))


def describe(model: Any) -> str:
    """One line: parameter count and sizes."""
    n_params = sum(p.numel() for p in model.parameters())
    c = model.config
    return f"Qwen2 {n_params / 1e6:.2f}M params (hidden {c.hidden_size}, {c.num_hidden_layers} layers, vocab {c.vocab_size})"
