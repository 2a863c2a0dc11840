import copy

import numpy as np
import pytest
import torch

from irlm import rl
from irlm.preferences import bt_loss
from irlm.sampling import token_logprobs


def ones(prompts, responses):  # a reward the untrained policy can climb: the share of "1" characters
    return np.array([r.count("1") / max(len(r), 1) for r in responses])


REWARDS = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.5, 1.0, 2.5]])


def test_reinforce_advantage_subtracts_the_batch_mean():
    assert np.allclose(rl.advantages(REWARDS, "reinforce"), REWARDS - REWARDS.mean())


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    loop = np.array([[r[i] - np.delete(r, i).mean() for i in range(len(r))] for r in REWARDS])
    assert np.allclose(rl.advantages(REWARDS, "rloo"), loop)


def test_grpo_standardises_each_group_and_zero_variance_groups_carry_no_signal():
    a = rl.advantages(REWARDS, "grpo").numpy()
    assert np.allclose(a[1], 0.0), "a group whose rewards are all equal"
    for row, r in zip(a[[0, 2]], REWARDS[[0, 2]]):
        assert np.allclose(row, (r - r.mean()) / (r.std(ddof=1) + 1e-6), atol=1e-6)
    assert np.allclose(rl.advantages(REWARDS, "rloo")[1], 0.0)


@pytest.mark.parametrize(
    "rewards, estimator, match",
    [(REWARDS, "ppo", "estimator"), (REWARDS[:, :1], "rloo", "k >= 2"), (REWARDS[0], "grpo", "shape")],
)
def test_advantages_bad_input(rewards, estimator, match):
    with pytest.raises(ValueError, match=match):
        rl.advantages(rewards, estimator)


def _two_token_loss(theta, tokens, advantage, old=None, clip=0.2, kl_coef=0.0):
    """A policy over two tokens with logits ``theta``; one response per row of ``tokens``."""
    logp_all = torch.log_softmax(theta, -1)
    logp = logp_all[tokens]
    old = logp.detach() if old is None else old
    ref = torch.log_softmax(torch.zeros(2), -1)[tokens]
    return rl.policy_loss(logp, old, ref, advantage, torch.ones_like(logp), clip, kl_coef)


def test_policy_loss_gradient_matches_a_finite_difference_and_the_policy_gradient():
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[0, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.5, -0.5], dtype=torch.float64)
    (grad,) = torch.autograd.grad(_two_token_loss(theta, tokens, adv, kl_coef=0.3), theta)
    old = torch.log_softmax(theta.detach(), -1)[tokens]  # frozen at theta: ratio 1 there
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = 1e-6
        up = _two_token_loss(theta.detach() + step, tokens, adv, old, kl_coef=0.3)
        down = _two_token_loss(theta.detach() - step, tokens, adv, old, kl_coef=0.3)
        assert float(grad[j]) == pytest.approx(float(up - down) / 2e-6, rel=1e-5)
    # without the KL term, the gradient at ratio 1 is -mean_i A_i grad log pi(y_i), by hand:
    (plain,) = torch.autograd.grad(_two_token_loss(theta, tokens, adv), theta)
    p = torch.softmax(theta.detach(), -1)
    score = torch.stack([sum(torch.eye(2, dtype=torch.float64)[t] - p for t in row) for row in tokens])
    assert torch.allclose(plain, -(adv[:, None] * score).mean(0))


def test_the_clip_stops_the_gradient_past_one_plus_epsilon():
    theta = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[0]])
    old = torch.log(torch.tensor([[0.3]], dtype=torch.float64))  # ratio 0.5 / 0.3 > 1.2
    (grad,) = torch.autograd.grad(_two_token_loss(theta, tokens, torch.ones(1, dtype=torch.float64), old), theta)
    assert torch.allclose(grad, torch.zeros(2, dtype=torch.float64))


def test_policy_loss_kl_term_is_zero_at_the_reference_and_positive_elsewhere():
    zero = torch.zeros(1, 3)
    assert float(rl.policy_loss(zero, zero, zero, torch.zeros(1), torch.ones(1, 3), kl_coef=1.0)) == 0.0
    off = torch.full((1, 3), -0.5)
    assert float(rl.policy_loss(off, off, zero, torch.zeros(1), torch.ones(1, 3), kl_coef=1.0)) > 0.0
    with pytest.raises(ValueError, match="kl_coef"):
        rl.policy_loss(zero, zero, zero, torch.zeros(1), torch.ones(1, 3), kl_coef=-1.0)


@pytest.mark.parametrize("estimator", rl.ESTIMATORS)
def test_train_raises_a_reward_the_policy_can_reach(tiny_model, estimator):
    model, tok = tiny_model
    policy = copy.deepcopy(model)
    log = rl.train(
        policy, model, tok, ["A: "] * 4, ones, estimator, steps=20, queries_per_step=4, group_size=8, lr=3e-2,
        max_new_tokens=6,
    )  # fmt: skip
    assert set(log[0]) == {"step", "reward", "reward_std", "zero_variance_groups", "kl", "entropy", "tokens"}
    assert np.mean([r["reward"] for r in log[-5:]]) > np.mean([r["reward"] for r in log[:5]]) + 0.1
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-4), "the first batch is sampled from the reference itself"


@pytest.mark.parametrize("kl_in_reward", [False, True])
def test_train_with_a_kl_penalty_stays_closer_and_reports_the_callback(tiny_model, kl_in_reward):
    model, tok = tiny_model
    kls = []
    for kl_coef in (0.0, 1.0):
        policy = copy.deepcopy(model)
        log = rl.train(
            policy, model, tok, ["A: "] * 4, ones, steps=12, queries_per_step=4, group_size=8, lr=3e-2,
            kl_coef=kl_coef, kl_in_reward=kl_in_reward, max_new_tokens=6, callback=lambda step: {"twice": 2.0 * step},
        )  # fmt: skip
        kls.append(np.mean([r["kl"] for r in log[-4:]]))
        assert [r["twice"] for r in log] == [2.0 * s for s in range(12)]
    assert kls[1] < kls[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"estimator": "ppo"}, "estimator"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"group_size": 0}, "group"),
        ({"kl_coef": -1.0}, "kl_coef"),
    ],
)
def test_train_bad_input(tiny_model, kwargs, match):
    model, tok = tiny_model
    with pytest.raises(ValueError, match=match):
        rl.train(model, model, tok, ["A: "], ones, **kwargs)
    with pytest.raises(ValueError, match="prompts"):
        rl.train(model, model, tok, [], ones)


def test_dpo_loss_is_the_bradley_terry_loss_of_the_implicit_rewards():
    pc, pr, rc, rr = (torch.tensor(v) for v in ([-3.0, -5.0], [-4.0, -2.0], [-3.5, -4.0], [-3.0, -3.0]))
    beta = 0.5
    by_hand = -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    assert torch.allclose(rl.dpo_loss(pc, pr, rc, rr, beta), by_hand)
    assert torch.allclose(rl.dpo_loss(pc, pr, rc, rr, beta), bt_loss(beta * (pc - rc), beta * (pr - rr)))
    with pytest.raises(ValueError, match="beta"):
        rl.dpo_loss(pc, pr, rc, rr, beta=0.0)


def test_groups_of_one_with_the_batch_mean_baseline_are_plain_reinforce(tiny_model):
    model, tok = tiny_model
    log = rl.train(
        copy.deepcopy(model), model, tok, ["A: "] * 4, ones, "reinforce", steps=2, queries_per_step=16, group_size=1,
        lr=1e-2, kl_coef=0.5, kl_in_reward=True, max_new_tokens=6,
    )  # fmt: skip
    assert all(np.isnan(r["zero_variance_groups"]) for r in log), "a group of one has no within-group spread"
    assert log[0]["reward_std"] >= 0


def test_train_dpo_moves_the_implicit_reward_towards_the_chosen_side(tiny_model):
    model, tok = tiny_model
    policy = copy.deepcopy(model)
    prompts, chosen, rejected = ["A: "] * 8, ["1 1 1"] * 8, ["2 2 2"] * 8
    losses = []
    rl.train_dpo(
        policy, model, tok, prompts, chosen, rejected, beta=0.5, steps=15, batch_size=8, lr=1e-2,
        callback=lambda step, m, loss: losses.append(loss),
    )  # fmt: skip
    assert losses[0] == pytest.approx(np.log(2), abs=1e-4), "the policy starts at the reference: margin 0"
    assert losses[-1] < 0.1
    with pytest.raises(ValueError, match="equal length"):
        rl.train_dpo(policy, model, tok, prompts, chosen, rejected[:2])


def test_train_with_trl_runs_grpo_and_reports_our_names(tiny_model):
    model, tok = tiny_model
    policy = copy.deepcopy(model)
    length = lambda prompts, responses: np.array([len(r) for r in responses], dtype=float)  # noqa: E731
    log = rl.train_with_trl(policy, tok, ["A: "] * 4, length, steps=2, queries_per_step=2, group_size=4, lr=3e-2,
                            max_new_tokens=6)  # fmt: skip
    assert [r["step"] for r in log] == [0, 1]
    assert {"reward", "zero_variance_groups", "entropy", "tokens"} <= set(log[0])
    assert log[0]["reward"] > 0 and log[0]["zero_variance_groups"] < 1
    moved = any(not torch.equal(a, b) for a, b in zip(policy.parameters(), model.parameters()))
    assert moved, "TRL trained the policy in place"


TRL_MAX_NEW = 6  # max_completion_length: TRL's dr_grpo loss divides by it, ours does not


def one_trl_step(model, tok, prompts, monkeypatch):
    """One GRPO step of :func:`rl.train_with_trl` on a copy of ``model``; returns the batch TRL
    sampled and scored, and the gradient its loss left on each parameter."""
    import trl

    seen = {}

    class Recording(trl.GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen["batch"] = {k: v.detach().clone() for k, v in out.items() if torch.is_tensor(v)}
            return out

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            seen["grad"] = [p.grad.detach().clone() for p in model.parameters()]
            return loss

    monkeypatch.setattr(trl, "GRPOTrainer", Recording)
    length = lambda prompts, responses: np.array([len(r) for r in responses], dtype=float)  # noqa: E731
    rl.train_with_trl(copy.deepcopy(model), tok, prompts, length, steps=1, queries_per_step=2, group_size=4,
                      max_new_tokens=TRL_MAX_NEW)  # fmt: skip
    assert seen["batch"]["advantages"].abs().sum() > 0, "the batch carries signal"
    return seen["batch"], seen["grad"]


def surrogate_grad(model, logp: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of our :func:`rl.policy_loss` (first update: ratio 1, no KL) on a copy's log-probabilities."""
    rl.policy_loss(logp, logp.detach(), logp.detach(), adv.float(), mask).backward()
    return [p.grad for p in model.parameters()]


def test_policy_loss_gradient_matches_trl_on_trls_own_batch(tiny_model, monkeypatch):
    # prompts of one length, as in chapter 9: our gradient is TRL's times its constant normaliser,
    # max_completion_length (loss_type="dr_grpo")
    model, tok = tiny_model
    b, theirs = one_trl_step(model, tok, ["A: "] * 4, monkeypatch)
    prompts = [tok.decode(ids[m.bool()]) for ids, m in zip(b["prompt_ids"], b["prompt_mask"])]
    completions = [ids[m.bool()].tolist() for ids, m in zip(b["completion_ids"], b["completion_mask"])]
    ours = copy.deepcopy(model)
    logp, mask = rl._padded(token_logprobs(ours, tok, prompts, completions))
    for g, t in zip(surrogate_grad(ours, logp, mask, b["advantages"]), theirs):
        torch.testing.assert_close(g, t * TRL_MAX_NEW, rtol=1e-4, atol=1e-7)


def test_trl_scores_left_padded_prompts_at_shifted_positions(tiny_model, monkeypatch):
    # prompts of two lengths: TRL's loss forward passes no position_ids, so a left-padded row is
    # read at positions shifted by its padding, which changes the logits of a model with learned
    # absolute positions (GPT-2, ours); generation counted positions from the mask
    model, tok = tiny_model
    b, theirs = one_trl_step(model, tok, ["A: ", "Q: 12 + 345 = ?\nA: "] * 2, monkeypatch)
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
    attention = torch.cat([b["prompt_mask"], b["completion_mask"]], 1)
    n = b["completion_ids"].shape[1]

    def grad_at(positions):
        copy_ = copy.deepcopy(model)
        logits = copy_(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, -n - 1 : -1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, b["completion_ids"][..., None]).squeeze(-1)
        return surrogate_grad(copy_, logp, b["completion_mask"].float(), b["advantages"])

    shifted = torch.arange(ids.shape[1])[None].expand_as(ids)  # what GPT-2 uses when position_ids is None
    from_mask = (attention.cumsum(1) - 1).clamp(min=0)  # what generation and our sampler use
    for g, t in zip(grad_at(shifted), theirs):
        torch.testing.assert_close(g, t * TRL_MAX_NEW, rtol=1e-4, atol=1e-7)
    assert any(not torch.allclose(g, t * TRL_MAX_NEW, rtol=1e-2) for g, t in zip(grad_at(from_mask), theirs))
