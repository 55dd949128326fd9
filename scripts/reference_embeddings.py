#!/usr/bin/env python3
"""Writes the reference embeddings that flywheel-local's embedding test compares against.

    HF_HUB_OFFLINE=1 python3 scripts/reference_embeddings.py models/all-minilm-l6-v2

MODEL_DIR holds all-MiniLM-L6-v2 as Flywheel ships it (model.safetensors, tokenizer.json,
config.json; a full sentence-transformers directory works too). The pipeline is built
explicitly, as sentence-transformers' own all-MiniLM-L6-v2 configuration defines it: the BERT
encoder with inputs truncated to 256 tokens, mean pooling over the real tokens, L2
normalisation. The output (crates/local/tests/fixtures/minilm_reference.json by default)
records the sentences, their vectors rounded to 6 decimals, and the package versions used.
Needs `pip install sentence-transformers` (PyTorch on the CPU is enough); reads nothing from
the network.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Varied lengths, punctuation, digits and non-ASCII text (accents, CJK, an emoji).
SENTENCES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Flywheel captures every interaction of an AI product so that teams can evaluate, "
    "fine-tune and improve their models with real usage data instead of guesses; "
    "this sentence is deliberately long, with numbers like 3.14159 and 2024-06-01.",
    "Ça coûte 12 € — très cher! Größe: 日本語のテキスト 🎉",
    "a",
]

MAX_SEQUENCE_TOKENS = 256
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "crates/local/tests/fixtures/minilm_reference.json"
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="the all-MiniLM-L6-v2 directory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, models

    encoder = models.Transformer(str(args.model_dir), max_seq_length=MAX_SEQUENCE_TOKENS)
    dimension = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[encoder, pooling, models.Normalize()], device="cpu")
    vectors = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)

    document = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "pipeline": f"BERT (max {MAX_SEQUENCE_TOKENS} tokens) -> mean pooling -> L2 normalise",
        "versions": {
            "python": sys.version.split()[0],
            "sentence-transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
        },
        "sentences": [
            {"text": text, "embedding": [round(float(x), 6) for x in vector]}
            for text, vector in zip(SENTENCES, vectors)
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # One line per vector keeps the file readable and its diffs small.
    text = json.dumps(document, ensure_ascii=False, indent=1)
    for sentence in document["sentences"]:
        expanded = json.dumps(sentence["embedding"], indent=1)
        nesting = "\n   "
        text = text.replace(
            expanded.replace("\n", nesting), json.dumps(sentence["embedding"]), 1
        )
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    print(f"wrote {len(SENTENCES)} reference embeddings to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
