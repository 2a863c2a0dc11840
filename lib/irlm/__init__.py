"""irlm: the thin library behind the course *Inverse RL meets LLMs*.

One module per idea, each serving a chapter or two:

* :mod:`irlm.tasks`    the world: arithmetic queries, instruction prompts, checkers
* :mod:`irlm.zoo`      tiny causal LMs trained on the world (or any Hugging Face model)
* :mod:`irlm.adapters` query + instruction -> model text, and the answer back
* :mod:`irlm.sampling` batched sampling with a KV cache; log-probabilities of text
* :mod:`irlm.metrics`  accuracy with bootstrap CIs, pass@k, diversity, entropy
* :mod:`irlm.prompting` every prompt on every query: accuracy, oracle, best single prompt
* :mod:`irlm.sft`      behaviour cloning: the masked NLL, the training loop, LoRA
* :mod:`irlm.reward`   best-of-N, majority vote, the outcome reward model, best-of-N KL
* :mod:`irlm.plot`     the book's one plotting style
"""

from irlm.seeding import seed_everything

__all__ = ["seed_everything"]
__version__ = "0.1.0"
