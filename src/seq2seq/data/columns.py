"""Column names shared by loading, tokenization, cleaning and batching."""

SOURCE = "source"
TARGET = "target"
# Token ids without bos/eos, added by seq2seq.data.tokenization.tokenize_splits.
SOURCE_IDS = "source_ids"
TARGET_IDS = "target_ids"
# Classification and language modeling.
TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"
