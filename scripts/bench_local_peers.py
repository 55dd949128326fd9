#!/usr/bin/env python3
"""The peers of `flywheel bench local`, run by the bench as a subprocess in the same run.

    chat   llama-cpp-python on the same GGUF file: prompt processing and generation speed
    embed  sentence-transformers (PyTorch, CPU) on the same model directory: sentences/s

Each subcommand prints one JSON document on stdout (progress and library noise go to stderr)
and exits 0; a missing peer prints {"error": "..."} and exits 3, so the bench can say why the
peer was skipped. Install the peers with:

    CMAKE_BUILD_PARALLEL_LEVEL=2 pip install llama-cpp-python   # builds llama.cpp, ~8 minutes
    pip install sentence-transformers                          # pulls in PyTorch
"""

import argparse
import json
import os
import sys
import time


def fail(message, code=3):
    print(json.dumps({"error": message}))
    sys.exit(code)


def chat(args):
    try:
        import llama_cpp
    except ImportError as err:
        fail(f"llama-cpp-python is not installed ({err}); pip install llama-cpp-python")
    with open(args.prompt_file, encoding="utf-8") as prompt_file:
        prompt = prompt_file.read()
    llm = llama_cpp.Llama(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=args.context,
        n_batch=512,
        verbose=False,
    )
    # The prompt is already rendered with the model's chat template, special tokens included;
    # tokenising it with `special=True` turns them into their ids as the template intends.
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=args.add_bos, special=True)

    def one_run():
        # Without the reset, generate() would reuse the cached prompt of the previous run.
        llm.reset()
        started = time.perf_counter()
        first = None
        generated = []
        # Greedy (temperature 0); end-of-sequence is ignored, so every run generates exactly
        # max_tokens tokens.
        for token in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0):
            if first is None:
                first = time.perf_counter()
            generated.append(token)
            if len(generated) >= args.max_tokens:
                break
        ended = time.perf_counter()
        return {
            "prompt_tokens": len(tokens),
            # Time to the first generated token: prompt processing plus one sampling step.
            "prompt_seconds": first - started,
            # The tokens after the first, as Flywheel's generation duration counts them.
            "completion_tokens": len(generated),
            "generation_seconds": ended - first,
            "generated_after_first": len(generated) - 1,
            "text": llm.detokenize(generated).decode("utf-8", errors="replace"),
        }

    for _ in range(args.warmup):
        one_run()
    runs = []
    for index in range(args.runs):
        run = one_run()
        print(f"llama-cpp-python run {index + 1}/{args.runs}: "
              f"{run['prompt_tokens'] / run['prompt_seconds']:.0f} prompt tok/s, "
              f"{run['generated_after_first'] / run['generation_seconds']:.1f} gen tok/s",
              file=sys.stderr)
        runs.append(run)
    text = runs[0]["text"] if runs else ""
    for run in runs:
        del run["text"]
    print(json.dumps({
        "peer": "llama-cpp-python",
        "version": llama_cpp.__version__,
        "threads": args.threads,
        "prompt_tokens": len(tokens),
        "text": text,
        "runs": runs,
    }))


def embed(args):
    try:
        import torch
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        fail(f"sentence-transformers is not installed ({err}); pip install sentence-transformers")
    torch.set_num_threads(args.threads)
    with open(args.sentences_file, encoding="utf-8") as sentences_file:
        sentences = [line.rstrip("\n") for line in sentences_file if line.strip()]
    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = args.max_sequence_tokens

    def one_run():
        started = time.perf_counter()
        embeddings = model.encode(sentences, batch_size=args.batch, convert_to_numpy=True,
                                  show_progress_bar=False)
        return time.perf_counter() - started, embeddings

    for _ in range(args.warmup):
        one_run()
    runs = []
    embeddings = None
    for index in range(args.runs):
        seconds, embeddings = one_run()
        print(f"sentence-transformers run {index + 1}/{args.runs}: "
              f"{len(sentences) / seconds:.0f} sentences/s", file=sys.stderr)
        runs.append({"sentences": len(sentences), "seconds": seconds})
    sample = [] if embeddings is None else [row.tolist() for row in embeddings[: args.sample]]
    print(json.dumps({
        "peer": "sentence-transformers",
        "version": sentence_transformers.__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "runs": runs,
        "sample_embeddings": sample,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    chat_parser = commands.add_parser("chat", help="llama-cpp-python on a GGUF file")
    chat_parser.add_argument("--model", required=True, help="the GGUF file")
    chat_parser.add_argument("--prompt-file", required=True,
                             help="the prompt, already rendered with the chat template")
    chat_parser.add_argument("--threads", type=int, default=os.cpu_count())
    chat_parser.add_argument("--max-tokens", type=int, default=128)
    chat_parser.add_argument("--context", type=int, default=2048)
    chat_parser.add_argument("--runs", type=int, default=5)
    chat_parser.add_argument("--warmup", type=int, default=1)
    chat_parser.add_argument("--add-bos", action="store_true",
                             help="prepend the BOS token (when the model's template does not)")
    chat_parser.set_defaults(run=chat)

    embed_parser = commands.add_parser("embed", help="sentence-transformers on a model directory")
    embed_parser.add_argument("--model", required=True, help="the sentence-transformers directory")
    embed_parser.add_argument("--sentences-file", required=True, help="one sentence per line")
    embed_parser.add_argument("--threads", type=int, default=os.cpu_count())
    embed_parser.add_argument("--batch", type=int, default=32)
    embed_parser.add_argument("--max-sequence-tokens", type=int, default=256)
    embed_parser.add_argument("--runs", type=int, default=5)
    embed_parser.add_argument("--warmup", type=int, default=1)
    embed_parser.add_argument("--sample", type=int, default=4,
                              help="embeddings of the first sentences to print, for comparison")
    embed_parser.set_defaults(run=embed)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
