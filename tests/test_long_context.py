"""The long-context system: the asking user's permitted documents in the prompt, or a reason why not."""

from eval import long_context
from fakes import HashEmbedder, write
from ingest.sync import index_folder
from rag.answer import IDK
from rag.retrieval import Retriever

POLICY = """
default = "deny"
[groups]
finance = ["bob"]
[[rules]]
path = "finance/**"
allow = ["group:finance"]
[[rules]]
path = "handbook/**"
allow = ["*"]
"""


class CountingGenerator:
    """Counts words as tokens; records what it was given."""

    def __init__(self, window: int) -> None:
        self.context_window = window
        self.calls: list[tuple[str, str]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, max_new_tokens=48, stop=("\n",), prefix=""):
        self.calls.append((prefix, list(prompts)))
        return [" 4.2 million" if "budget" in prompt else " unknown" for prompt in prompts]


def _retriever(tmp_path):
    docs = tmp_path / "org"
    files = {
        "handbook/welcome.md": "Welcome aboard. The canteen opens at noon.",
        "finance/budget.txt": "The 2031 budget for the lighthouse project is 4.2 million kroner.",
    }
    for name, text in files.items():
        write(docs, name, text)
    write(docs, ".rag-acl.toml", POLICY)
    embedder = HashEmbedder()
    index_folder(docs, tmp_path / "idx", embedder)
    return Retriever(tmp_path / "idx", embedder=embedder)


def test_the_prompt_holds_only_what_the_user_may_read(tmp_path):
    retriever = _retriever(tmp_path)
    assert "4.2 million" not in long_context.documents_text(retriever, None)
    assert "canteen" in long_context.documents_text(retriever, None)
    assert "4.2 million" in long_context.documents_text(retriever, "bob")
    generator = CountingGenerator(window=4096)
    reply = long_context.ask(generator, retriever, "What is the budget?", None)
    assert "4.2 million" not in generator.calls[0][0] and reply.answer == "4.2 million"
    unknown = long_context.ask(generator, retriever, "When does the canteen open?", None)
    assert unknown.abstained


def test_it_runs_only_when_every_user_s_documents_fit_the_window(tmp_path):
    retriever = _retriever(tmp_path)
    fits = long_context.plan(CountingGenerator(window=4096), retriever, {None, "bob"})
    assert fits["runs"] and fits["tokens"]["bob"] > fits["tokens"]["None"]
    too_small = long_context.plan(CountingGenerator(window=520), retriever, {None, "bob"})
    assert not too_small["runs"] and "more than the 520-token window" in too_small["reason"]


def test_each_user_s_questions_are_decoded_together_and_answered_in_order(tmp_path):
    retriever = _retriever(tmp_path)
    generator = CountingGenerator(window=4096)

    class Item:
        def __init__(self, question, user):
            self.question, self.user = question, user

    items = [Item("budget a?", "bob"), Item("canteen?", None), Item("budget b?", "bob"), Item("lunch?", None)]
    replies, seconds = long_context.ask_grouped(generator, retriever, items, lambda item: item.user, timed=2)
    assert [r.answer for r in replies] == ["4.2 million", IDK, "4.2 million", IDK]
    batches = [(prefix, prompts) for prefix, prompts in generator.calls if len(prompts) > 1]
    # each user's two questions in one batch, behind that user's documents only
    assert [("4.2 million" in prefix, len(prompts)) for prefix, prompts in batches] == [(True, 2), (False, 2)]
    assert "budget a?" in batches[0][1][0] and "budget b?" in batches[0][1][1]
    # the first two items are timed again one at a time, each behind its own user's documents
    alone = [(prefix, prompts[0]) for prefix, prompts in generator.calls if len(prompts) == 1]
    assert [("4.2 million" in prefix, prompt) for prefix, prompt in alone] == [
        (True, "Question: budget a?\nAnswer:"),
        (False, "Question: canteen?\nAnswer:"),
    ]
    assert len(seconds) == 2
