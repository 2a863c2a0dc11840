"""Chapter 9's probe of its GRPO settings against the verifier, on validation queries.

The chapter picked learning rate and queries per step in a probe of four settings that
looked at its test queries. This script re-runs those four through the chapter's own
pipeline (the same split of training queries, RL prompts and seed) and scores each on 200
validation queries the chapter never uses: one sample at T=1 and greedy, each minus the
start with a paired interval. About 3 minutes on 2 CPU cores:

    python tests/probe_ch9_settings.py
"""

import copy
import random
import time

import numpy as np

import irlm
from irlm import metrics, rl, tasks, zoo
from irlm.adapters import adapter_for, sample_responses

seed = 0
irlm.seed_everything(seed)
model, tok = zoo.load("tiny-arith", progress=False)
ad = adapter_for(model, tok)
splits, rng = tasks.make_splits(), random.Random(seed)
pool = rng.sample(splits.train, len(splits.train))
rl_train = pool[50 + 300 :]  # the chapter's orm_queries + dpo_queries come first
test_queries, val_queries = rng.sample(splits.test, 100), rng.sample(splits.validation, 100)
unused = set(val_queries)
held = [q for q in splits.validation if q not in unused][:200]  # validation queries the chapter never uses
answer_of = {ad.prompt(q, "columns"): q.answer for q in pool}
rl_prompts = [ad.prompt(q, "columns") for q in rl_train]


def gold(prompts, responses):
    return np.array([float(ad.parse_answer(r) == answer_of[p]) for p, r in zip(prompts, responses)])


def score(m):
    s = sample_responses(m, tok, held, "columns", n=8, max_new_tokens=48, seed=seed + 1).correct.mean(1)
    g = sample_responses(m, tok, held, "columns", temperature=0, max_new_tokens=48).correct[:, 0].astype(float)
    return s, g


s0, g0 = score(model)
print(f"start: one sample {s0.mean():.3f}, greedy {g0.mean():.3f} on {len(held)} validation queries", flush=True)
for lr in (2e-4, 1e-3):
    for q in (8, 16):
        t = time.time()
        pol = copy.deepcopy(model)
        rl.train(
            pol,
            model,
            tok,
            rl_prompts,
            gold,
            estimator="grpo",
            steps=30,
            queries_per_step=q,
            group_size=8,
            lr=lr,
            max_new_tokens=48,
            seed=seed,
        )
        s, g = score(pol)
        sample_ci, greedy_ci = metrics.paired_difference(s, s0), metrics.paired_difference(g, g0)
        print(f"lr {lr:g}, {q} queries a step ({time.time() - t:.0f} s):")
        print(f"  one sample {s.mean():.3f}, minus the start {sample_ci}")
        print(f"  greedy {g.mean():.3f}, minus the start {greedy_ci}")
