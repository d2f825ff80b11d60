"""Tiny random sentence-transformers folders of five encoder families, made offline.

Every tokenizer is built (or trained on a few sentences) with the ``tokenizers`` library and wrapped in the
family's own transformers tokenizer class, so ``model_input_names``, special tokens and the pad id are what the
real family has. Nothing is downloaded.

==============  ==========================  ==========================  ================  ======
family          tokenizer (``tokenizers``)  special tokens / pad id     token_type_ids    config
==============  ==========================  ==========================  ================  ======
bert            WordPiece, lower-casing     [CLS] x [SEP], [PAD]=0      yes               BertConfig
roberta         byte-level BPE (trained)    <s> x </s>, <pad>=1         no                RobertaConfig (positions from 2)
xlm-roberta     Unigram + Metaspace         <s> x </s>, <pad>=1         no                XLMRobertaConfig
mpnet           WordPiece, lower-casing     <s> x </s>, <pad>=1         no                MPNetConfig (relative bias)
distilbert      WordPiece, lower-casing     [CLS] x [SEP], [PAD]=0      no                DistilBertConfig (dim/n_heads)
==============  ==========================  ==========================  ================  ======

Sentence-transformers options, for every family:

* ``pooling`` (mean, cls, max, lasttoken) and ``normalize``: ``1_Pooling/config.json`` and a Normalize module;
* ``max_seq_length``: written to ``sentence_bert_config.json`` (``None`` leaves it out, so the length comes from
  the tokenizer's ``model_max_length`` and ``max_position_embeddings``, as sentence-transformers does);
* ``model_max_length``: the tokenizer's (default 128, the usable positions of every tiny family);
* ``prompts``: written to ``config_sentence_transformers.json`` (e5 style: ``{"query": "query: ", "passage": "passage: "}``);
* ``do_lower_case``: written to ``sentence_bert_config.json``.

Presets: :data:`VARIANTS` (bge-style CLS pooling, e5-style prompts, a length from the tokenizer only,
``do_lower_case``). Same ``seed`` and family -> same weights, so variants of a family share their ONNX files.

Used by ``tests/test_families.py``; every family builds in about a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORDS = ("protein vitamin heart cancer diet sugar insulin cell gene virus brain sleep exercise blood fat "
         "liver kidney drug dose trial risk study effect patient mouse tumor immune bone muscle skin lung "
         "stock bond market price tax loan bank fund rate risk credit debt equity income").split()

# Training text for the BPE and Unigram tokenizers: the words above in sentences, with case, digits and punctuation.
_CORPUS = [
    "The patient took a low dose of the drug in the trial.",
    "Protein and vitamin intake change the risk of heart disease.",
    "Insulin resistance, sugar and fat in the liver and kidney.",
    "A mouse study of tumor growth and the immune cell response.",
    "Bone, muscle, skin and lung tissue after exercise and sleep.",
    "Stock and bond market prices, tax, loans and bank funds.",
    "Credit, debt, equity and income: the rate of risk in 2024!",
    "Gene and virus effects in the brain and the blood.",
    "What is the effect of diet on cancer? Results of 12 studies.",
    "Über café naïve résumé – unicode text, émoji 🙂 and CJK 蛋白质.",
    *(" ".join(WORDS[i:i + 7]) for i in range(0, len(WORDS), 3)),
]

HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 128  # usable positions; RoBERTa-like configs get 2 more (positions start after the pad id)


# --- tokenizers -----------------------------------------------------------------------------------

def _wordpiece(specials: list[str], unk: str):  # noqa: ANN202
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = [*specials, *sorted(set(WORDS)), *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab_map = {t: i for i, t in enumerate(dict.fromkeys(vocab))}
    tok = Tokenizer(models.WordPiece(vocab_map, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok, vocab_map


def _bert_tokenizer(cls_name: str, model_max_length: int):  # noqa: ANN202
    import transformers
    from tokenizers import processors

    tok, vocab = _wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[UNK]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    cls = getattr(transformers, cls_name)
    return cls(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
               mask_token="[MASK]", model_max_length=model_max_length), len(vocab)


def _roberta_specials() -> dict[str, str]:
    return {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
            "pad_token": "<pad>", "mask_token": "<mask>"}


def _bpe_tokenizer(model_max_length: int):  # noqa: ANN202
    """Byte-level BPE trained on :data:`_CORPUS`, as RoBERTa/GPT-2: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 3, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    fast = RobertaTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **_roberta_specials())
    return fast, tok.get_vocab_size()


def _unigram_tokenizer(model_max_length: int):  # noqa: ANN202
    """A sentencepiece-style Unigram with Metaspace, as XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    # A fixed vocabulary with log-probability scores (tokenizers' UnigramTrainer is not deterministic between runs,
    # and the tokenizer must be reproducible): whole words, word pieces, single characters; longer pieces likelier.
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    words = sorted(set(WORDS) | {"the", "of", "and", "a", "in", "is", "what", "study", "effect", "results"})
    pieces = [*(f"▁{w}" for w in words), *(w[:k] for w in words for k in (3, 4) if len(w) > k),
              *(w[k:] for w in words for k in (3, 4) if len(w) > k + 1), "ing", "ed", "s", "es", "er", "tion",
              "▁", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"()-–éüïç"]
    vocab = [(t, 0.0) for t in specials]
    vocab += [(p, -12.0 + min(len(p), 8)) for p in dict.fromkeys(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **_roberta_specials())
    return fast, tok.get_vocab_size()


def _mpnet_tokenizer(model_max_length: int):  # noqa: ANN202
    """WordPiece with MPNet's specials, as all-mpnet-base-v2: <s>=0 <pad>=1 </s>=2 [UNK]=3 <mask>=4."""
    from tokenizers import processors
    from transformers import MPNetTokenizerFast

    tok, vocab = _wordpiece(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], "[UNK]")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    specials = {**_roberta_specials(), "unk_token": "[UNK]"}
    return MPNetTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **specials), len(vocab)


# --- sentence-transformers files ------------------------------------------------------------------

def write_st_files(folder: Path, dim: int, *, pooling: str = "mean", normalize: bool = True,
                   max_seq_length: int | None = 64, prompts: dict[str, str] | None = None,
                   do_lower_case: bool = False) -> None:
    """modules.json, sentence_bert_config.json, 1_Pooling/config.json and (with prompts) config_sentence_transformers.json."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    st_config: dict[str, Any] = {"do_lower_case": do_lower_case}
    if max_seq_length is not None:
        st_config["max_seq_length"] = max_seq_length
    (folder / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_lasttoken": pooling == "lasttoken"}, indent=2))
    if prompts is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


def _save(folder: Path, tokenizer: Any, model: Any, st: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.eval().save_pretrained(folder)
    write_st_files(folder, HIDDEN, **st)
    return folder


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# --- the families -----------------------------------------------------------------------------------

def make_bert(folder: Path, *, seed: int = 0, model_max_length: int = MAX_POSITIONS, **st: Any) -> Path:
    """BERT: WordPiece, token_type_ids, absolute positions 0..n-1, pad id 0."""
    from transformers import BertConfig, BertModel

    tokenizer, vocab_size = _bert_tokenizer("BertTokenizerFast", model_max_length)
    _seeded(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_POSITIONS, type_vocab_size=2)
    return _save(folder, tokenizer, BertModel(config), st)


def make_roberta(folder: Path, *, seed: int = 0, model_max_length: int = MAX_POSITIONS, **st: Any) -> Path:
    """RoBERTa: byte-level BPE, no token_type_ids, pad id 1, positions padding_idx+1.. (max_position_embeddings n+2)."""
    from transformers import RobertaConfig, RobertaModel

    tokenizer, vocab_size = _bpe_tokenizer(model_max_length)
    _seeded(seed)
    config = RobertaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                           intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_POSITIONS + 2, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return _save(folder, tokenizer, RobertaModel(config), st)


def make_xlm_roberta(folder: Path, *, seed: int = 0, model_max_length: int = MAX_POSITIONS, **st: Any) -> Path:
    """XLM-R: Unigram (sentencepiece-style) tokenizer, otherwise RoBERTa's architecture."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer, vocab_size = _unigram_tokenizer(model_max_length)
    _seeded(seed)
    config = XLMRobertaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                              num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
                              max_position_embeddings=MAX_POSITIONS + 2, type_vocab_size=1,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return _save(folder, tokenizer, XLMRobertaModel(config), st)


def make_mpnet(folder: Path, *, seed: int = 0, model_max_length: int = MAX_POSITIONS, **st: Any) -> Path:
    """MPNet: WordPiece with <s>/</s>, no token_type_ids, pad id 1, RoBERTa positions plus a relative attention bias."""
    import torch
    from transformers import MPNetConfig, MPNetModel

    tokenizer, vocab_size = _mpnet_tokenizer(model_max_length)
    _seeded(seed)
    config = MPNetConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_POSITIONS + 2,
                         relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    model = MPNetModel(config)
    with torch.no_grad():  # a visible relative bias: random init leaves it small, and then wrong buckets would hide
        model.encoder.relative_attention_bias.weight.normal_(0.0, 0.5)
    return _save(folder, tokenizer, model, st)


def make_distilbert(folder: Path, *, seed: int = 0, model_max_length: int = MAX_POSITIONS, **st: Any) -> Path:
    """DistilBERT: WordPiece, no token_type_ids, config keys dim/n_heads/hidden_dim instead of BERT's names."""
    from transformers import DistilBertConfig, DistilBertModel

    tokenizer, vocab_size = _bert_tokenizer("DistilBertTokenizerFast", model_max_length)
    _seeded(seed)
    config = DistilBertConfig(vocab_size=vocab_size, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
                              max_position_embeddings=MAX_POSITIONS, pad_token_id=0)
    return _save(folder, tokenizer, DistilBertModel(config), st)


FAMILIES: dict[str, Callable[..., Path]] = {
    "bert": make_bert,
    "roberta": make_roberta,
    "xlm-roberta": make_xlm_roberta,
    "mpnet": make_mpnet,
    "distilbert": make_distilbert,
}

# Sentence-transformers presets, applied to any family.
VARIANTS: dict[str, dict[str, Any]] = {
    "mean": {},                                                                 # all-MiniLM / all-mpnet style
    "cls": {"pooling": "cls", "normalize": True},                              # bge style
    "e5": {"prompts": {"query": "query: ", "passage": "passage: "}},           # e5 style prefixes
    # no max_seq_length in sentence_bert_config: the tokenizer's model_max_length (48) decides, as in sentence-transformers
    "len-from-tokenizer": {"max_seq_length": None, "model_max_length": 48},
    "lower": {"do_lower_case": True},                                          # sentence_bert_config do_lower_case
}


def make_family(family: str, folder: Path, variant: str = "mean", **options: Any) -> Path:
    """The tiny ``family`` model with the ``variant`` preset (and explicit ``options`` on top) in ``folder``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](folder, **{**VARIANTS[variant], **options})
