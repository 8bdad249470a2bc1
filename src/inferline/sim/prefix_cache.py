"""Automatic prefix caching, after vLLM V1's KV-cache manager (vllm/v1/core/kv_cache_manager.py).

A prompt is cut into blocks of `block_size` tokens; block i is identified by a chained hash of
blocks 0..i, so a hit on block i means the whole prefix up to it is the same. Only full prompt blocks
are hashed. The simulator has no tokenizer: a block is `block_size * CHARS_PER_TOKEN` characters of
the prompt as the engine would see it (chat messages rendered with ChatML markers), or `block_size`
token ids of a pre-tokenized prompt.

Cached blocks live in the KV cache itself, as in vLLM:
  - a block in use by running requests has a reference count and is shared (counted once in KV use);
  - when its last user finishes, it goes to the tail of an eviction queue but keeps its content:
    it is free (not in `vllm:kv_cache_usage_perc`) and can still be hit;
  - allocating new blocks takes free blocks, evicting cached ones from the head of that queue
    (least recently freed first), so free-but-cached blocks never outnumber free blocks.
A hit lets a request skip prefill of those tokens; a fully cached prompt still computes its last
token (at most `prompt_tokens - 1` tokens hit), as vLLM does to sample the first output token.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixCache", "chat_prompt_text", "hash_blocks", "hash_token_blocks"]


def hash_blocks(text: str, block_chars: int, max_blocks: int) -> tuple[int, ...]:
    """Chained hashes of the first MAX_BLOCKS full blocks of BLOCK_CHARS characters of TEXT."""
    n = min(len(text) // block_chars, max_blocks)
    out: list[int] = []
    h = 0
    for i in range(n):
        h = hash((h, text[i * block_chars : (i + 1) * block_chars]))
        out.append(h)
    return tuple(out)


def hash_token_blocks(ids: Sequence[int], block_size: int, max_blocks: int) -> tuple[int, ...]:
    """Chained hashes of the full blocks of BLOCK_SIZE token ids."""
    n = min(len(ids) // block_size, max_blocks)
    out: list[int] = []
    h = 0
    for i in range(n):
        h = hash((h, tuple(ids[i * block_size : (i + 1) * block_size])))
        out.append(h)
    return tuple(out)


def chat_prompt_text(messages: list[tuple[str, str]]) -> str:
    """The prompt a ChatML template renders from (role, text) pairs, with the assistant primer."""
    parts = [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in messages]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


class PrefixCache:
    """The hashed blocks of one engine's KV cache: shared ones in use, and free ones kept for reuse.

    The scheduler owns the free-block count; this class keeps the hashes, reference counts and the
    eviction order, and tells the scheduler how many free blocks a change takes or gives back.
    """

    __slots__ = ("_evictable", "_refs", "hits_tokens", "queries_tokens")

    def __init__(self) -> None:
        self._refs: dict[int, int] = {}  # hash -> running requests holding the block (>= 1)
        self._evictable: OrderedDict[int, None] = OrderedDict()  # free but cached, head = evicted first
        self.queries_tokens = 0
        self.hits_tokens = 0

    def __len__(self) -> int:
        """Cached blocks, in use or free."""
        return len(self._refs) + len(self._evictable)

    @property
    def in_use(self) -> int:
        return len(self._refs)

    @property
    def free_cached(self) -> int:
        return len(self._evictable)

    def __contains__(self, h: int) -> bool:
        return h in self._refs or h in self._evictable

    def match(self, hashes: Sequence[int], max_blocks: int) -> int:
        """How many leading blocks of HASHES (at most MAX_BLOCKS) are cached. No state changes."""
        n = 0
        refs, evictable = self._refs, self._evictable
        for h in hashes[:max_blocks]:
            if h not in refs and h not in evictable:
                break
            n += 1
        return n

    def free_among(self, hashes: Sequence[int]) -> int:
        """How many of HASHES (all cached) are free blocks, i.e. would be taken from the free pool."""
        evictable = self._evictable
        return sum(1 for h in hashes if h in evictable)

    def acquire(self, hashes: Sequence[int]) -> int:
        """Take a reference on each of HASHES (all cached). Returns how many were free (now in use)."""
        taken = 0
        refs, evictable = self._refs, self._evictable
        for h in hashes:
            if h in refs:
                refs[h] += 1
            else:
                del evictable[h]
                refs[h] = 1
                taken += 1
        return taken

    def add(self, h: int) -> int:
        """A request's own, just-computed block gets hash H. Returns the free-block change: +1 when the
        block duplicates a cached one (the request shares that one and gives its own copy back), -1+1 = 0
        when that cached copy was free, 0 when H is new (the block is now cached and in use)."""
        refs = self._refs
        if h in refs:
            refs[h] += 1
            return 1
        if h in self._evictable:
            del self._evictable[h]
            refs[h] = 1
            return 0  # the free cached copy is now in use, our own copy is freed
        refs[h] = 1
        return 0

    def release(self, hashes: Sequence[int]) -> int:
        """Drop one reference on each of HASHES. Returns how many blocks became free (still cached).
        Freed in reverse order, so a prefix's tail is evicted before its head (as vLLM does)."""
        freed = 0
        refs, evictable = self._refs, self._evictable
        for h in reversed(hashes):
            n = refs[h] - 1
            if n:
                refs[h] = n
            else:
                del refs[h]
                evictable[h] = None
                freed += 1
        return freed

    def evict_to(self, free_blocks: int) -> None:
        """Forget the least recently freed cached blocks until no more are cached than are free."""
        evictable = self._evictable
        while len(evictable) > free_blocks:
            evictable.popitem(last=False)

    def record(self, queried: int, hit: int) -> None:
        self.queries_tokens += queried
        self.hits_tokens += hit
