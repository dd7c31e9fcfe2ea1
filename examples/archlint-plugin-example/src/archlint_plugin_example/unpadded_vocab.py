"""PAD001 unpadded-vocab: an example of a team rule shipped as an archlint plugin."""

from __future__ import annotations

from torch import nn

from archlint.findings import Confidence, Fix, Severity
from archlint.rules import Example, Rule


class UnpaddedVocab(Rule):
    """Token embedding or LM head whose vocabulary size is not a multiple of 64.

    What it does:
        Finds the token embedding (the `nn.Embedding` whose row count is the config's
        `vocab_size`, or the largest embedding of a plain `nn.Module`) and every
        `nn.Linear` projecting onto that vocabulary (the LM head), and flags them when
        the vocabulary size is not a multiple of `multiple` (64).

    Why is this bad:
        The LM head is usually the largest matmul of a small model. With a vocabulary
        like GPT-2's 50,257 its output dimension falls off the tile sizes that tensor
        cores and fused cross-entropy kernels are tuned for, so the last, partial tile
        is padded on every step; GPT-2 in nanoGPT trains measurably faster at 50,304.
        Tensor-parallel sharding also needs the vocabulary divisible by the world size.

    Example:
        `archlint gpt2`: `transformer.wte` and `lm_head` have 50,257 rows.

    Use instead:
        Pad the vocabulary once, before training, and save the padded model:
        `model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)`.

    References:
        transformers `PreTrainedModel.resize_token_embeddings(pad_to_multiple_of=...)`;
        Megatron-LM `--make-vocab-size-divisible-by`; nanoGPT's `vocab_size=50304`.
    """

    code = "PAD001"
    name = "unpadded-vocab"
    severity = Severity.WARNING
    confidence = Confidence.HIGH
    tools = ("tensor-cores", "tensor-parallel")
    multiple = 64  # a team that wants 128 (Megatron's default) subclasses and changes this

    VALID = (
        Example("llama", note="32,000 = 500 × 64"),
        Example("archlint_plugin_example.zoo:PaddedTinyLM"),
    )
    INVALID = (
        Example("gpt2", paths=("transformer.wte", "lm_head"), fix="pad_to_multiple_of=64"),
        Example("archlint_plugin_example.zoo:UnpaddedTinyLM", paths=("embed", "head"), fix="pad_to_multiple_of=64"),
    )

    def check(self, ctx):
        embeddings = [i for i in ctx.graph if isinstance(i.module, nn.Embedding)]
        vocabularies = {int(v) for _, v in ctx.config_values("vocab_size") if isinstance(v, int)}
        if not vocabularies and embeddings:  # a plain nn.Module: its largest embedding is the vocabulary
            vocabularies = {max(i.module.num_embeddings for i in embeddings)}
        for vocab in sorted(v for v in vocabularies if v % self.multiple):
            padded = -(-vocab // self.multiple) * self.multiple
            fix = Fix(f"Pad the vocabulary to a multiple of {self.multiple} ({padded:,} rows), then save the model",
                      f"model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of={self.multiple})")
            for kind, group in self._modules_of(ctx, vocab):
                yield self.finding(
                    group.paths,
                    f"{kind} has {vocab:,} rows, not a multiple of {self.multiple} (next: {padded:,}); "
                    "its matmul falls off tensor-core tile sizes",
                    module_class=group.info.class_name,
                    fix=fix,
                    details={"vocab_size": vocab, "padded": padded, "multiple": self.multiple},
                )

    @staticmethod
    def _modules_of(ctx, vocab: int):
        def is_vocab_embedding(info) -> bool:
            return isinstance(info.module, nn.Embedding) and info.module.num_embeddings == vocab

        for group in ctx.graph.distinct(is_vocab_embedding):
            yield "token embedding", group
        for group in ctx.graph.distinct(lambda i: isinstance(i.module, nn.Linear) and i.module.out_features == vocab):
            yield "LM head", group
