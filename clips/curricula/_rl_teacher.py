from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clips.curricula.base import Curriculum, StepInfo
from clips.curricula.difficulty import check_difficulty
from clips.errors import ConfigError

REWARDS = ("gradient_norm", "loss_gain")


class Exp3S:
    """The Exp3.S bandit as Graves et al. 2017 (Algorithm 1) use it, with alpha_t = 1/t."""

    def __init__(self, k: int, eta: float, beta: float, epsilon: float):
        self.k, self.eta, self.beta, self.epsilon = k, eta, beta, epsilon
        self.w = np.zeros(k)
        self.t = 0

    def probabilities(self) -> np.ndarray:
        e = np.exp(self.w - self.w.max())
        return (1 - self.epsilon) * e / e.sum() + self.epsilon / self.k

    def update(self, arm: int, reward: float, pi: np.ndarray | None = None) -> None:
        """``reward`` already rescaled to [-1, 1]; ``pi`` the policy the arm was drawn from."""
        pi = self.probabilities() if pi is None else pi
        self.t += 1
        alpha = 1.0 / self.t
        r_tilde = np.full(self.k, self.beta) / pi
        r_tilde[arm] = (reward + self.beta) / pi[arm]
        x = self.w + self.eta * r_tilde
        m = x.max()
        ex = np.exp(x - m)
        mix = (1 - alpha) * ex + alpha / (self.k - 1) * (ex.sum() - ex)
        self.w = m + np.log(mix)
        self.w -= self.w.max()  # only differences matter; keeps the numbers small


class _Reward:
    """A reward on its way from the GPU: copied without blocking, read once the copy is done."""

    def __init__(self, arm: int, pi: np.ndarray, tensor):
        self.arm, self.pi = arm, pi
        if tensor.device.type == "cuda":
            import torch

            self.host = torch.empty((), dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = tensor, None

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def value(self) -> float:
        if self.event is not None:
            self.event.synchronize()
        return float(self.host)


def rescale(reward: float, history: list[float]) -> float:
    """Map a raw reward to [-1, 1] with the 20th and 80th percentiles of recent rewards (Graves et al.)."""
    lo, hi = np.quantile(history, [0.2, 0.8])
    if hi <= lo:
        return 0.0
    if reward < lo:
        return -1.0
    if reward > hi:
        return 1.0
    return float(2 * (reward - lo) / (hi - lo) - 1)


@dataclass
class RLOptions:
    buckets: int = 4
    eta: float = 0.05
    beta: float = 0.0
    epsilon: float = 0.05
    reward: str = "gradient_norm"  # or loss_gain: batch loss before minus after the update (one extra forward)
    history: int = 500  # rewards kept for the percentile rescaling
    difficulty: str = "cohort"
    teacher_uri: str = ""

    def validate(self):
        if self.buckets < 2:
            raise ConfigError("rl_teacher needs buckets >= 2")
        if self.reward not in REWARDS:
            raise ConfigError(f"unknown reward {self.reward!r}; known: {', '.join(REWARDS)}")
        if not 0 <= self.epsilon <= 1 or self.eta <= 0 or self.history < 2:
            raise ConfigError("rl_teacher needs 0 <= epsilon <= 1, eta > 0, history >= 2")
        check_difficulty(self.difficulty, self.teacher_uri)


class RLTeacher(Curriculum):
    """Difficulty buckets as the arms of an Exp3.S bandit; the reward is the learning progress."""

    name = "rl_teacher"
    paper = "Graves et al. 2017 (automated curriculum learning, Exp3.S teacher)"
    Options = RLOptions

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self.needs_grad_norm = options.reward == "gradient_norm"
        order = np.argsort(ctx.difficulty, kind="stable")
        self.bucket_of = np.empty(len(order), int)
        for b, members in enumerate(np.array_split(order, options.buckets)):
            self.bucket_of[members] = b
        self.members = [np.nonzero(self.bucket_of == b)[0] for b in range(options.buckets)]
        self.bandit = Exp3S(options.buckets, options.eta, options.beta, options.epsilon)
        self.rewards: list[float] = []
        self.arm, self.pi = 0, self.bandit.probabilities()
        self.pulls = np.zeros(options.buckets, int)
        self.pending: list[_Reward] = []

    def batch_indices(self, rng, n, weights):
        self._take_rewards(block=len(self.pending) > 1)  # never more than one step behind
        self.pi = self.bandit.probabilities()
        self.arm = int(rng.choice(self.opt.buckets, p=self.pi))
        self.pulls[self.arm] += 1
        pool = self.members[self.arm]
        return rng.choice(pool, size=n, replace=True)

    def after_step(self, info: StepInfo) -> None:
        if self.opt.reward == "gradient_norm":
            raw = info.grad_sq_norm.detach()
        else:
            raw = (info.losses.mean() - self.ctx.batch_losses(info.x, info.y).mean()).detach()
        # Reading the reward now would make the CPU wait for the GPU every step. It is copied
        # without blocking and fed to the bandit as soon as the copy is done (at the latest one
        # step later): Exp3.S with a delay of one step.
        self.pending.append(_Reward(self.arm, self.pi, raw))
        self._take_rewards(block=raw.device.type != "cuda")

    def _take_rewards(self, block: bool) -> None:
        while self.pending and (block or self.pending[0].ready()):
            r = self.pending.pop(0)
            value = r.value()
            self.rewards = (self.rewards + [value])[-self.opt.history:]
            self.bandit.update(r.arm, rescale(value, self.rewards), r.pi)

    def end_epoch(self, epoch: int) -> None:
        self._take_rewards(block=True)

    def patient_weights(self, sampling):
        p = self.bandit.probabilities()
        return np.array([p[b] / len(self.members[b]) for b in self.bucket_of])

    def log_state(self):
        p = self.bandit.probabilities()
        out = {f"p_bucket_{b}": float(p[b]) for b in range(self.opt.buckets)}
        out |= {f"pulls_bucket_{b}": float(self.pulls[b]) for b in range(self.opt.buckets)}
        return out

    def state_dict(self):
        self._take_rewards(block=True)
        return {"w": self.bandit.w.tolist(), "t": self.bandit.t, "rewards": list(self.rewards),
                "pulls": self.pulls.tolist()}

    def load_state_dict(self, state):
        self.bandit.w = np.asarray(state["w"], float)
        self.bandit.t = state["t"]
        self.rewards = list(state["rewards"])
        self.pulls = np.asarray(state["pulls"], int)
