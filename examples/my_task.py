"""Tutorial: a verifiable task in one file. Then `reasonrl gen/verify --task examples/my_task.py:task`,
`reasonrl.make("sort_numbers", length=6)` and `gymnasium.make("reasonrl/SortNumbers-v0")` just work."""
import random
from dataclasses import dataclass

import reasonrl
from reasonrl.data_gen import Generator
from reasonrl.verifiers import Verdict, Verifier
from reasonrl.verifiers.extract import extract_tag

@dataclass(frozen=True)
class SortConfig:
    length: int = 5  # how many numbers to sort: the difficulty knob

class SortGenerator(Generator):
    Config = SortConfig
    def generate(self, seed: int) -> dict:
        numbers = random.Random(seed).sample(range(100), self.config.length)
        answer = " ".join(map(str, sorted(numbers)))
        prompt = f"Sort {numbers} ascending. Answer like <answer>1 2 3</answer>."
        return reasonrl.make_problem(f"sort-{self.config.length}-{seed}", "sort_numbers", prompt, answer,
                                     {"length": self.config.length}, {"worked_solution": f"<answer>{answer}</answer>"})

class SortVerifier(Verifier):
    def verify(self, response: str, answer: str) -> Verdict:
        got = extract_tag(response)
        ok = got is not None and got.split() == answer.split()
        return Verdict(float(ok), ok, got, "ok" if ok else "no_answer" if got is None else "wrong_answer")

task = reasonrl.register_task("sort_numbers", SortGenerator, SortVerifier, description="sort numbers ascending")
