"""A pairwise A/B preference study: the same prompts and seeds through two systems, side by side.

A system is a model with its settings, written 'model[:preset][,key=value...]':
'dcgan', 'dcgan:digits,truncation=0.7', 'flux:schnell,steps=2'. Which system is shown on the
left is drawn per trial, so position bias does not favour either; each vote is one SQLite
transaction (`inference.web.votes`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from inference.web.service import Request, Service
from inference.web.settings import StudySettings
from inference.web.votes import Vote, VoteStore
from utils.errors import UserError

_FIELDS = {"steps": int, "height": int, "width": int, "guidance": float, "truncation": float,
           "negative_prompt": str}


@dataclass(frozen=True)
class System:
    """One side of the comparison."""

    text: str
    """As the user wrote it; the name votes are stored under."""
    model: str
    preset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> System:
        head, *pairs = [p.strip() for p in text.split(",")]
        model, _, preset = head.partition(":")
        if not model:
            raise UserError(f"system '{text}' names no model: write model[:preset][,key=value...]")
        settings: dict[str, Any] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or key not in _FIELDS:
                raise UserError(f"system '{text}': '{pair}' is not key=value with a key among "
                                f"{', '.join(sorted(_FIELDS))}")
            try:
                settings[key] = _FIELDS[key](value)
            except ValueError:
                raise UserError(f"system '{text}': {key} must be a {_FIELDS[key].__name__}, got '{value}'") from None
        return cls(text.strip(), model, preset or None, settings)

    def request(self, prompt: str | None, seed: int) -> Request:
        return replace(Request(model=self.model, preset=self.preset, prompt=prompt, seed=seed, num_images=1),
                       **self.settings)


@dataclass(frozen=True)
class Trial:
    """One comparison: a prompt and a seed, and which system goes on the left."""

    index: int
    prompt: str | None
    seed: int
    left: System
    right: System


class Study:
    """The trials of a study, their images (through the service's gates) and the vote store."""

    def __init__(self, settings: StudySettings, service: Service):
        self.settings, self.service = settings, service
        self.a, self.b = System.parse(settings.a), System.parse(settings.b)
        if self.a.text == self.b.text:
            raise UserError(f"both sides of the study are '{self.a.text}': compare two models or two settings")
        for system in (self.a, self.b):
            service.check(system.request(settings.prompts[0] if settings.prompts else None, 0))
        if not settings.seeds:
            raise UserError("a study needs at least one seed")
        self.store = VoteStore(settings.db)
        self.cases = [(p, s) for p in (settings.prompts or (None,)) for s in settings.seeds]

    def order(self, session: str) -> list[int]:
        """A session's own order of the cases (so two people do not see the same sequence)."""
        idx = list(range(len(self.cases)))
        random.Random(session).shuffle(idx)
        return idx

    def trial(self, session: str, position: int) -> Trial:
        order = self.order(session)
        case = order[position % len(order)]
        prompt, seed = self.cases[case]
        flip = random.Random(f"{session}:{position}").random() < 0.5
        left, right = (self.b, self.a) if flip else (self.a, self.b)
        return Trial(case, prompt, seed, left, right)

    def images(self, trial: Trial) -> tuple[Any, Any]:
        """The left and right images of a trial."""
        left = self.service.generate(trial.left.request(trial.prompt, trial.seed))
        right = self.service.generate(trial.right.request(trial.prompt, trial.seed))
        return left.images[0], right.images[0]

    def vote(self, trial: Trial, choice: str, session: str) -> int:
        return self.store.add(Vote(self.settings.name, trial.prompt, trial.seed, trial.left.text, trial.right.text,
                                   choice, session))

    def count(self) -> int:
        return self.store.count(self.settings.name)
